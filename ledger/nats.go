package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/railswitch/railswitch/journal"
)

// NATSSink publishes each record to a JetStream stream with its idempotency key as the message id
// (Nats-Msg-Id): the server stores a message id once within the stream's duplicate window and acknowledges a
// repeat as a duplicate without storing it. A batch is published asynchronously, at most batch_records in
// flight, and Deliver returns nil only when every message of the batch was acknowledged. Outside the duplicate
// window JetStream no longer knows an id, so the window must cover the shipper's retry horizon plus the longest
// downtime of the switch.
type NATSSink struct {
	name     string
	stream   string
	subject  string
	create   bool
	replicas int
	window   time.Duration
	horizon  time.Duration
	nc       *nats.Conn
	js       jetstream.JetStream
	log      *zap.Logger

	mu    sync.Mutex // one Deliver at a time: the ack wait covers the connection's async publishes
	ready bool       // the stream was checked (and created or updated)
}

// natsAckTimeout fails an async publish whose ack has not come, so that no publish slot is held for ever.
const natsAckTimeout = 30 * time.Second

func openNATS(ctx context.Context, c Config, horizon time.Duration, log *zap.Logger) (*NATSSink, error) {
	nc, err := nats.Connect(c.URL,
		nats.Name("railswitch-ledger-"+c.Name),
		nats.Timeout(c.ConnectTimeout),
		nats.RetryOnFailedConnect(true), // a server down at start is retried in the background
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectBufSize(-1), // publishing while disconnected fails at once instead of queueing
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", zap.Error(err))
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats reconnected") }),
	)
	if err != nil {
		return nil, fmt.Errorf("ledger: sink %q: connect %s: %w", c.Name, redactURL(c.URL), err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(c.BatchRecords),
		jetstream.WithPublishAsyncTimeout(natsAckTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("ledger: sink %q: %w", c.Name, err)
	}
	s := &NATSSink{
		name: c.Name, stream: c.Stream, subject: c.Subject, create: c.CreateStream, replicas: c.Replicas,
		window: c.DuplicateWindow, horizon: horizon, nc: nc, js: js, log: log,
	}
	sctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
	defer cancel()
	s.mu.Lock()
	err = s.ensureStream(sctx)
	s.mu.Unlock()
	if err != nil {
		if isPermanent(err) {
			nc.Close()
			return nil, err
		}
		log.Warn("nats not reachable at start; the stream is checked before the first delivery", zap.Error(err))
	}
	return s, nil
}

// Name implements journal.Sink.
func (s *NATSSink) Name() string { return s.name }

// Stream returns the name of the JetStream stream.
func (s *NATSSink) Stream() string { return s.stream }

// ensureStream checks the stream's duplicate window and, with create_stream, creates the stream or adds the
// subject and raises the window of an existing one (keeping its other settings). s.mu is held.
func (s *NATSSink) ensureStream(ctx context.Context) error {
	if s.ready {
		return nil
	}
	if !s.nc.IsConnected() {
		return fmt.Errorf("ledger: sink %q: nats not connected (%s)", s.name, s.nc.Status())
	}
	st, err := s.js.Stream(ctx, s.stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && s.create:
		cfg := jetstream.StreamConfig{
			Name: s.stream, Subjects: []string{s.subject}, Storage: jetstream.FileStorage,
			Replicas: s.replicas, Duplicates: s.window, Retention: jetstream.LimitsPolicy,
			Description: "railswitch ledger postings",
		}
		if _, err := s.js.CreateStream(ctx, cfg); err != nil {
			return s.streamErr("create", err)
		}
		s.log.Info("created stream", zap.String("stream", s.stream), zap.Duration("duplicate_window", s.window))
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return &setupError{fmt.Errorf("ledger: sink %q: stream %s does not exist (create it, or set create_stream: true)", s.name, s.stream)}
	case err != nil:
		return fmt.Errorf("ledger: sink %q: stream %s: %w", s.name, s.stream, err)
	default:
		cfg := st.CachedInfo().Config
		covered := subjectCovered(cfg.Subjects, s.subject)
		switch {
		case s.create && (!covered || cfg.Duplicates < s.window):
			if !covered {
				cfg.Subjects = append(cfg.Subjects, s.subject)
			}
			cfg.Duplicates = max(cfg.Duplicates, s.window)
			if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
				return s.streamErr("update", err)
			}
			s.log.Info("updated stream", zap.String("stream", s.stream), zap.Duration("duplicate_window", cfg.Duplicates))
		case !covered:
			return &setupError{fmt.Errorf("ledger: sink %q: stream %s does not take subject %s (add it, or set create_stream: true)", s.name, s.stream, s.subject)}
		case cfg.Duplicates < s.horizon:
			return &setupError{fmt.Errorf("ledger: sink %q: stream %s has a duplicate window of %v, shorter than the shipper's retry horizon %v: a redelivered record could be stored twice (raise the stream's duplicate window, or set create_stream: true)",
				s.name, s.stream, cfg.Duplicates, s.horizon)}
		}
	}
	s.ready = true
	return nil
}

// streamErr wraps a refused stream create or update; an API error is permanent (retrying will not cure it).
func (s *NATSSink) streamErr(op string, err error) error {
	err = fmt.Errorf("ledger: sink %q: %s stream %s (subject %s, duplicate window %v): %w", s.name, op, s.stream, s.subject, s.window, err)
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return &setupError{err}
	}
	return err
}

// subjectCovered reports whether one of the stream's subject filters (wildcards allowed) matches subject.
func subjectCovered(filters []string, subject string) bool {
	tokens := strings.Split(subject, ".")
	for _, f := range filters {
		ft := strings.Split(f, ".")
		match := true
		for i, t := range ft {
			if t == ">" {
				match = i < len(tokens)
				break
			}
			if i >= len(tokens) || (t != "*" && t != tokens[i]) {
				match = false
				break
			}
			if i == len(ft)-1 && len(ft) != len(tokens) {
				match = false
			}
		}
		if match {
			return true
		}
	}
	return false
}

// Deliver implements journal.Sink: publishes every record with its idempotency key as message id and waits
// for all acknowledgements, or for ctx.
func (s *NATSSink) Deliver(ctx context.Context, recs []journal.Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ledger: sink %q: %w", s.name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureStream(ctx); err != nil {
		return err
	}
	futures := make([]jetstream.PubAckFuture, 0, len(recs))
	fail := func(what string, err error) error {
		// Forget the batch's pending acks, so they do not hold publish slots; the batch comes again. Check the
		// stream again before the next attempt (it may have been deleted and need creating).
		s.js.CleanupPublisher()
		s.ready = false
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return fmt.Errorf("ledger: sink %q: %s (%d of %d records published): %w", s.name, what, len(futures), len(recs), err)
	}
	for i := range recs {
		body, err := recs[i].MarshalJSON()
		if err != nil {
			return fmt.Errorf("ledger: sink %q: encode record %d of the batch: %w", s.name, i, err)
		}
		msg := &nats.Msg{Subject: s.subject, Data: body, Header: nats.Header{}}
		// The stall wait bounds how long PublishMsgAsync blocks for a free slot (batch_records in flight).
		stall := 5 * time.Second
		if d, ok := ctx.Deadline(); ok {
			stall = max(time.Millisecond, min(stall, time.Until(d)))
		}
		f, err := s.js.PublishMsgAsync(msg, jetstream.WithMsgID(natsMsgID(recs[i].IdempotencyKey())),
			jetstream.WithExpectStream(s.stream), jetstream.WithStallWait(stall))
		if err != nil {
			return fail("publish", err)
		}
		futures = append(futures, f)
		if err := ctx.Err(); err != nil {
			return fail("publish", err)
		}
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fail(fmt.Sprintf("ack of record %d", i), err)
		case <-ctx.Done():
			return fail("waiting for acks", ctx.Err())
		}
	}
	return nil
}

// Close drains nothing (Deliver already waited for its acks) and closes the connection.
func (s *NATSSink) Close() error {
	s.nc.Close()
	return nil
}

// natsMsgID returns the idempotency key as a header value: as is when it is printable ASCII (the norm), else
// quoted with Go escapes, so that no control byte (CR, LF) reaches the header block. The mapping is fixed, so
// dedup holds.
func natsMsgID(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return strconv.QuoteToASCII(key)
		}
	}
	return key
}
