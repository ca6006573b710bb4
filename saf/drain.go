package saf

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// drain is the worker of one acquirer: it sends the first pending entry until it is acknowledged or dead,
// then the next, so entries go out in queue order.
func (q *Queue) drain(aq *acqQueue) {
	defer q.workers.Done()
	for q.ctx.Err() == nil {
		q.mu.Lock()
		e := aq.head()
		var wait time.Duration
		if e != nil {
			wait = e.Next.Sub(q.cfg.Now())
		}
		q.mu.Unlock()
		switch {
		case e == nil:
			select {
			case <-aq.wake:
			case <-q.ctx.Done():
			}
		case wait > 0:
			_ = q.cfg.Wait(q.ctx, wait) // an early return is Close: the loop ends
		default:
			q.attempt(aq, e)
		}
	}
}

// head returns the first pending entry, or nil.
func (aq *acqQueue) head() *Entry {
	for _, e := range aq.entries {
		if !e.Dead {
			return e
		}
	}
	return nil
}

// attempt sends e once. The attempt is stored before the send, so after a crash the next send is a repeat
// (with the repeat MTI) and the backoff holds.
func (q *Queue) attempt(aq *acqQueue, e *Entry) {
	p := &aq.policy
	now := q.cfg.Now()
	log := q.cfg.Log.With(zap.String("acquirer", aq.name), zap.String("id", e.ID), zap.String("txn", e.TxnID))
	if p.DeadOnMaxAge && now.Sub(e.Since) >= p.MaxAge {
		q.bury(aq, e, log, func(c *Entry) { c.LastError = fmt.Sprintf("older than max age %s", p.MaxAge) })
		return
	}
	c, err := q.update(aq, e, func(c *Entry) {
		c.Attempts++
		c.Sent++
		c.Next = now.Add(p.backoff(c.Attempts))
	})
	if err != nil {
		log.Error("saf: cannot store an attempt: not sending", zap.Error(err))
		q.mu.Lock()
		e.Next, e.LastError = now.Add(p.backoff(e.Attempts+1)), "store: "+err.Error()
		q.mu.Unlock()
		return
	}
	q.metrics.attempts.WithLabelValues(aq.name).Inc()
	rc, err := q.send(aq, &c)
	if err == nil && p.acknowledges(c.Kind, rc) {
		if err := q.cfg.Store.Remove(q.ctx, aq.name, e.ID); err != nil {
			// The bank has it: forget it here anyway; after a restart it goes out once more as a repeat.
			log.Error("saf: cannot remove an acknowledged entry", zap.Error(err))
		}
		q.mu.Lock()
		for i, x := range aq.entries {
			if x == e {
				aq.entries = append(aq.entries[:i], aq.entries[i+1:]...)
				break
			}
		}
		delete(aq.alarmed, e.ID)
		q.mu.Unlock()
		q.metrics.acked.WithLabelValues(aq.name).Inc()
		log.Info("saf: acknowledged", zap.String("rc", rc), zap.Int("attempts", c.Attempts))
		return
	}
	reason := "response code " + rc
	if err != nil {
		reason = err.Error()
	}
	if c.Attempts >= p.MaxAttempts {
		q.bury(aq, e, log, func(c *Entry) { c.LastError = reason })
		return
	}
	if _, err := q.update(aq, e, func(c *Entry) { c.LastError = reason }); err != nil {
		log.Error("saf: cannot store a failed attempt", zap.Error(err))
	}
	log.Warn("saf: not acknowledged, will retry", zap.String("reason", reason), zap.Int("attempts", c.Attempts),
		zap.Time("next", c.Next))
}

// bury moves e to the dead letters.
func (q *Queue) bury(aq *acqQueue, e *Entry, log *zap.Logger, change func(*Entry)) {
	c, err := q.update(aq, e, func(c *Entry) { change(c); c.Dead = true })
	if err != nil {
		log.Error("saf: cannot store a dead letter", zap.Error(err))
		return
	}
	q.metrics.dead.WithLabelValues(aq.name).Inc()
	log.Error("saf: moved to the dead letters", zap.String("reason", c.LastError), zap.Int("attempts", c.Attempts))
}

// send opens the sealed message, applies the repeat MTI and hands it to the Sender, pinned to the
// original's link (for the first PinAttempts sends when that is set).
func (q *Queue) send(aq *acqQueue, c *Entry) (string, error) {
	msg, err := q.cfg.Sealer.Open(c.Sealed)
	if err != nil {
		return "", err
	}
	defer clear(msg)
	if repeat, ok := repeatOf[c.MTI]; ok && c.Sent > 1 && !aq.policy.NoRepeatMTI {
		writeMTI(msg, repeat, aq.enc)
	}
	link := c.Link
	if pin := aq.policy.PinAttempts; pin > 0 && c.Attempts > pin {
		link = ""
	}
	ctx, cancel := context.WithTimeout(q.ctx, aq.policy.SendTimeout)
	defer cancel()
	return q.cfg.Sender.Send(ctx, aq.name, link, msg)
}

// Check raises the alarm for pending entries older than their acquirer's MaxAge, once per entry. The queue
// calls it every CheckEvery.
func (q *Queue) Check() {
	now := q.cfg.Now()
	var alarms []Alarm
	q.mu.Lock()
	for _, aq := range q.queues {
		for _, e := range aq.entries {
			if age := now.Sub(e.Queued); !e.Dead && !aq.alarmed[e.ID] && age >= aq.policy.MaxAge {
				aq.alarmed[e.ID] = true
				alarms = append(alarms, Alarm{Acquirer: aq.name, ID: e.ID, TxnID: e.TxnID, Kind: e.Kind, Age: age,
					Attempts: e.Attempts, LastError: e.LastError})
			}
		}
	}
	q.mu.Unlock()
	for _, a := range alarms {
		q.cfg.Log.Error("saf: entry older than max age", zap.String("acquirer", a.Acquirer), zap.String("id", a.ID),
			zap.String("txn", a.TxnID), zap.Duration("age", a.Age), zap.String("last_error", a.LastError))
		if q.cfg.OnAlarm != nil {
			q.cfg.OnAlarm(a)
		}
	}
}

func (q *Queue) checkLoop() {
	defer q.workers.Done()
	t := time.NewTicker(q.cfg.CheckEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			q.Check()
		case <-q.ctx.Done():
			return
		}
	}
}
