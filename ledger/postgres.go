package ledger

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"go.uber.org/zap"

	"github.com/railswitch/railswitch/journal"
)

// PostgresSink stores each record as one row of a postings table whose primary key is the idempotency key. A
// batch is one round trip on one connection: its INSERT ... SELECT FROM unnest(...) ON CONFLICT (idempotency_key) DO NOTHING
// statements (one per batch_records rows) go in one pgx batch, which PostgreSQL runs as one implicit
// transaction. A key is kept as long as its row, so redeliveries have no time limit.
type PostgresSink struct {
	name   string
	table  string // quoted schema.table
	schema string // quoted schema
	ident  [2]string
	chunk  int
	cfg    *pgx.ConnConfig
	log    *zap.Logger
	insert string

	mu     sync.Mutex // one Deliver at a time; guards conn and ready
	conn   *pgx.Conn  // nil until dialled, and after a failure
	ready  bool       // the schema exists
	closed bool
}

// Postgres column order of the unnest arrays, which is also the INSERT's.
const pgColumns = `idempotency_key, txn_id, kind, original_txn_id, posting, bureau, station, channel, terminal,
	merchant, acquirer, mti, processing_code, amount, currency, response_code, auth_code, rrn, terminal_stan,
	acquirer_stan, pan_masked, terminal_local_time, received_at, answered_at, record_version, journal_seq`

// pgSchema is the table; %[1]s is the quoted table, %[2]s the bare table name (for index names)
// and %[3]s the quoted schema.
const pgSchema = `
CREATE TABLE IF NOT EXISTS %[1]s (
	idempotency_key     text        PRIMARY KEY,
	txn_id              text        NOT NULL,
	kind                text        NOT NULL,
	original_txn_id     text,
	posting             boolean     NOT NULL,
	bureau              text        NOT NULL,
	station             text        NOT NULL,
	channel             text        NOT NULL,
	terminal            text        NOT NULL,
	merchant            text        NOT NULL,
	acquirer            text        NOT NULL,
	mti                 text        NOT NULL,
	processing_code     text        NOT NULL,
	amount              bigint      NOT NULL,
	currency            text        NOT NULL,
	response_code       text        NOT NULL,
	auth_code           text,
	rrn                 text        NOT NULL,
	terminal_stan       text        NOT NULL,
	acquirer_stan       text        NOT NULL,
	pan_masked          text        NOT NULL,
	terminal_local_time text        NOT NULL,
	received_at         timestamptz NOT NULL,
	answered_at         timestamptz,
	record_version      smallint    NOT NULL,
	journal_seq         bigint,
	inserted_at         timestamptz NOT NULL DEFAULT now()
);
`

// pgIndexes are the table's indexes, same placeholders as pgSchema.
const pgIndexes = `
CREATE INDEX IF NOT EXISTS %[2]s_bureau_received_idx ON %[1]s (bureau, received_at) WHERE posting;
CREATE INDEX IF NOT EXISTS %[2]s_received_idx ON %[1]s (received_at);
CREATE INDEX IF NOT EXISTS %[2]s_txn_idx ON %[1]s (txn_id);
CREATE INDEX IF NOT EXISTS %[2]s_original_idx ON %[1]s (original_txn_id) WHERE original_txn_id IS NOT NULL;
`

func openPostgres(ctx context.Context, c Config, log *zap.Logger) (*PostgresSink, error) {
	pc, err := pgx.ParseConfig(c.DSN)
	if err != nil {
		// pgx redacts the password in its parse errors.
		return nil, fmt.Errorf("ledger: sink %q: dsn: %w", c.Name, err)
	}
	pc.ConnectTimeout = c.ConnectTimeout
	s := &PostgresSink{
		name:   c.Name,
		ident:  [2]string{c.Schema, c.Table},
		table:  pgx.Identifier{c.Schema, c.Table}.Sanitize(),
		schema: pgx.Identifier{c.Schema}.Sanitize(),
		chunk:  c.BatchRecords,
		cfg:    pc,
		log:    log,
	}
	s.insert = fmt.Sprintf(`INSERT INTO %s (%s)
SELECT k, t, kd, NULLIF(o, ''), p, b, st, ch, te, me, ac, mt, pc, am, cu, rc, NULLIF(au, ''), rr, ts, qs, pa, lt, ra, aa, v, sq
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::text[], $7::text[], $8::text[],
	$9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::bigint[], $15::text[], $16::text[],
	$17::text[], $18::text[], $19::text[], $20::text[], $21::text[], $22::text[], $23::timestamptz[],
	$24::timestamptz[], $25::smallint[], $26::bigint[])
	AS r(k, t, kd, o, p, b, st, ch, te, me, ac, mt, pc, am, cu, rc, au, rr, ts, qs, pa, lt, ra, aa, v, sq)
ON CONFLICT (idempotency_key) DO NOTHING`, s.table, pgColumns)
	s.mu.Lock()
	err = s.ensureSchema(ctx)
	s.mu.Unlock()
	if err != nil {
		if isPermanent(err) {
			s.Close()
			return nil, err
		}
		log.Warn("postgres not reachable at start; the schema is created before the first delivery", zap.Error(err))
	}
	return s, nil
}

// Name implements journal.Sink.
func (s *PostgresSink) Name() string { return s.name }

// Table returns the quoted schema-qualified name of the postings table.
func (s *PostgresSink) Table() string { return s.table }

// connect returns the connection, dialling it if needed. s.mu is held.
func (s *PostgresSink) connect(ctx context.Context) (*pgx.Conn, error) {
	if s.closed {
		return nil, fmt.Errorf("ledger: sink %q: closed", s.name)
	}
	if s.conn != nil && !s.conn.IsClosed() {
		return s.conn, nil
	}
	conn, err := pgx.ConnectConfig(ctx, s.cfg)
	if err != nil {
		return nil, fmt.Errorf("ledger: sink %q: connect: %w", s.name, err)
	}
	s.conn = conn
	return conn, nil
}

// drop closes the connection after a failure, so that the next call dials afresh. s.mu is held.
func (s *PostgresSink) drop() {
	if s.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.conn.Close(ctx)
		cancel()
		s.conn = nil
	}
}

// ensureSchema creates the schema, table and indexes once, under an advisory lock so that switches starting
// together do not race in CREATE ... IF NOT EXISTS. s.mu is held.
func (s *PostgresSink) ensureSchema(ctx context.Context) error {
	if s.ready {
		return nil
	}
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if !s.ready {
			s.drop()
		}
	}()
	h := fnv.New64a()
	h.Write([]byte("railswitch-ledger/" + s.ident[0] + "." + s.ident[1]))
	lockID := int64(h.Sum64())
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockID); err != nil {
			return err
		}
		// CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the database even when the schema exists.
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", s.ident[0]).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+s.schema); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(pgSchema, s.table, s.ident[1], s.schema)); err != nil {
			return err
		}
		// A table of the same name but another shape would fail every insert; say so now.
		var n int
		err := tx.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns
			WHERE table_schema = $1 AND table_name = $2 AND column_name = ANY($3)`,
			s.ident[0], s.ident[1], strings.Fields(strings.ReplaceAll(pgColumns, ",", " "))).Scan(&n)
		if err != nil {
			return err
		}
		if want := len(strings.Split(pgColumns, ",")); n != want {
			return &setupError{fmt.Errorf("ledger: sink %q: table %s exists with %d of the %d ledger columns: choose another table", s.name, s.table, n, want)}
		}
		_, err = tx.Exec(ctx, fmt.Sprintf(pgIndexes, s.table, s.ident[1], s.schema))
		return err
	})
	if isPermanent(err) {
		return err
	}
	if err != nil {
		return fmt.Errorf("ledger: sink %q: create table %s: %w", s.name, s.table, err)
	}
	s.ready = true
	return nil
}

// pgArrays are the columns of one chunk.
type pgArrays struct {
	key, txn, kind, orig                                   []string
	posting                                                []bool
	bureau, station, channel, terminal, merchant, acquirer []string
	mti, pcode                                             []string
	amount                                                 []int64
	currency, rc, auth, rrn, tstan, astan, pan, ltime      []string
	received, answered                                     []pgtype.Timestamptz
	version                                                []int16
	seq                                                    []pgtype.Int8
}

func (a *pgArrays) fill(recs []journal.Record) {
	n := len(recs)
	*a = pgArrays{
		key: make([]string, n), txn: make([]string, n), kind: make([]string, n), orig: make([]string, n),
		posting: make([]bool, n), bureau: make([]string, n), station: make([]string, n), channel: make([]string, n),
		terminal: make([]string, n), merchant: make([]string, n), acquirer: make([]string, n), mti: make([]string, n),
		pcode: make([]string, n), amount: make([]int64, n), currency: make([]string, n), rc: make([]string, n),
		auth: make([]string, n), rrn: make([]string, n), tstan: make([]string, n), astan: make([]string, n),
		pan: make([]string, n), ltime: make([]string, n), received: make([]pgtype.Timestamptz, n),
		answered: make([]pgtype.Timestamptz, n), version: make([]int16, n), seq: make([]pgtype.Int8, n),
	}
	for i := range recs {
		r := &recs[i]
		a.key[i], a.txn[i], a.kind[i], a.orig[i] = pgText(r.IdempotencyKey()), pgText(r.TxnID), r.Kind.String(), pgText(r.OriginalTxnID)
		a.posting[i] = r.Posting
		a.bureau[i], a.station[i], a.channel[i], a.terminal[i] = pgText(r.Bureau), pgText(r.Station), pgText(r.Channel), pgText(r.Terminal)
		a.merchant[i], a.acquirer[i], a.mti[i], a.pcode[i] = pgText(r.Merchant), pgText(r.Acquirer), pgText(r.MTI), pgText(r.ProcessingCode)
		a.amount[i], a.currency[i], a.rc[i], a.auth[i], a.rrn[i] = r.Amount, pgText(r.Currency), pgText(r.ResponseCode), pgText(r.AuthCode), pgText(r.RRN)
		a.tstan[i], a.astan[i], a.pan[i], a.ltime[i] = pgText(r.TerminalSTAN), pgText(r.AcquirerSTAN), pgText(r.PAN.String()), pgText(r.TerminalLocalTime)
		a.received[i] = pgtype.Timestamptz{Time: r.ReceivedAt, Valid: true}
		a.answered[i] = pgtype.Timestamptz{Time: r.AnsweredAt, Valid: !r.AnsweredAt.IsZero()}
		a.version[i] = journal.RecordVersion
		// journal_seq stays NULL: journal.Record does not carry its sequence number (yet).
	}
}

func (a *pgArrays) args() []any {
	return []any{a.key, a.txn, a.kind, a.orig, a.posting, a.bureau, a.station, a.channel, a.terminal, a.merchant,
		a.acquirer, a.mti, a.pcode, a.amount, a.currency, a.rc, a.auth, a.rrn, a.tstan, a.astan, a.pan, a.ltime,
		a.received, a.answered, a.version, a.seq}
}

// Deliver implements journal.Sink: the whole batch in one round trip and one transaction; rows whose key is
// already in the table are skipped.
func (s *PostgresSink) Deliver(ctx context.Context, recs []journal.Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ledger: sink %q: %w", s.name, err)
	}
	if len(recs) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureSchema(ctx); err != nil {
		return err
	}
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	for start := 0; start < len(recs); start += s.chunk {
		var a pgArrays
		a.fill(recs[start:min(start+s.chunk, len(recs))])
		b.Queue(s.insert, a.args()...)
	}
	// SendBatch pipelines the statements with one Sync: one round trip, one implicit transaction.
	br := conn.SendBatch(ctx, b)
	var errs []error
	for range b.Len() {
		if _, err := br.Exec(); err != nil {
			errs = append(errs, err)
			break
		}
	}
	errs = append(errs, br.Close())
	if err := errors.Join(errs...); err != nil {
		s.drop()        // the connection's state is unknown (a cancelled pipeline, a cut network)
		s.ready = false // check the table again (it may have been dropped)
		if ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
		}
		return fmt.Errorf("ledger: sink %q: insert %d records into %s: %w", s.name, len(recs), s.table, err)
	}
	return nil
}

// Close closes the connection; later deliveries fail.
func (s *PostgresSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop()
	s.closed = true
	return nil
}

// pgText makes s storable in a PostgreSQL text column, which refuses NUL bytes and invalid UTF-8: one such
// record would otherwise fail its batch on every retry and stop the sink. Valid text (the norm) is returned as
// is; NUL becomes U+FFFD like an invalid sequence. The idempotency key is cleaned the same way every time, so
// dedup holds.
func pgText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
