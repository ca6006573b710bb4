package journal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Options configure a Journal. The fields with a yaml tag are the `journal:` section of the switch's config.
type Options struct {
	// Dir holds the segment and checkpoint files; it is created if missing.
	Dir string `yaml:"dir"`
	// Fsync makes Append wait for fsync of its batch. Off (benchmarks, tests) still writes before acknowledging,
	// which survives a process crash but not a power loss.
	Fsync bool `yaml:"fsync"`
	// SegmentBytes is the size at which the next batch goes to a new segment (default 64 MiB).
	SegmentBytes int64 `yaml:"segment_bytes"`
	// MaxUnshippedBytes raises the alarm when unshipped bytes reach it (0: no alarm).
	MaxUnshippedBytes int64 `yaml:"max_unshipped_bytes"`
	// HardLimitBytes makes Append fail with ErrFull when unshipped bytes reach it (0: no limit).
	HardLimitBytes int64 `yaml:"hard_limit_bytes"`
	// RetentionDays: a segment whose last write is older than this and that every sink has shipped is deleted
	// (0: keep every segment).
	RetentionDays int `yaml:"retention_days"`
	// RetentionInterval is how often retention runs when RetentionDays is set (default 10 minutes).
	RetentionInterval time.Duration `yaml:"-"`

	// OnAlarm is called when the unshipped-bytes alarm is raised or cleared. It runs under the journal's lock:
	// it must return quickly and not call the journal.
	OnAlarm func(Alarm) `yaml:"-"`
	// Sync makes a file or directory durable (default (*os.File).Sync); tests inject a counter.
	Sync func(*os.File) error `yaml:"-"`
	// Now is the clock of retention (default time.Now).
	Now func() time.Time `yaml:"-"`
	// Logger receives operational events; no record content is logged (default: no logs).
	Logger *zap.Logger `yaml:"-"`
	// Registerer receives the journal's metrics (default: none).
	Registerer prometheus.Registerer `yaml:"-"`
}

// Position is a point in the journal: the sequence number of a record and the stream position (bytes of
// frames since the journal was created) just after it. A sink's checkpoint is a Position.
type Position struct {
	Seq   uint64 `json:"seq"`
	Bytes int64  `json:"bytes"`
}

var (
	// ErrFull is returned by Append when unshipped bytes reached Options.HardLimitBytes. The switch then
	// declines new authorizations rather than approve what it cannot journal.
	ErrFull = errors.New("journal: unshipped bytes at the hard limit")
	// ErrClosed is returned by Append after Close.
	ErrClosed = errors.New("journal: closed")
)

const (
	defaultSegmentBytes = 64 << 20
	maxBatchRecords     = 4096
	maxBatchBytes       = 4 << 20
)

// Journal is an append-only, crash-safe log of posting records. It is safe for concurrent use.
type Journal struct {
	opts Options
	log  *zap.Logger

	reqs       chan *appendReq
	closeMu    sync.RWMutex // Append holds it shared while sending, so Close never closes reqs under a sender
	closed     bool
	writerDone chan struct{}
	stop       chan struct{} // ends the retention loop
	bgDone     sync.WaitGroup

	// Owned by the writer goroutine (and by Open before it starts).
	f        *os.File
	fileSize int64
	nextSeq  uint64
	buf      []byte
	failed   error

	committedSeq atomic.Uint64 // last durable record
	committedPos atomic.Int64  // stream position after it
	failedFlag   atomic.Bool
	batchSizes   prometheus.Histogram

	mu      sync.Mutex // guards the fields below
	segs    []segment
	shipped map[string]Position // checkpoint of each sink
	subs    map[chan struct{}]struct{}
	alarmOn bool
}

// Open opens or creates the journal in opts.Dir, recovering the last segment: a torn tail is truncated and the
// sequence continues after the last valid record; damage elsewhere is a *CorruptionError.
func Open(opts Options) (*Journal, error) {
	if opts.Dir == "" {
		return nil, errors.New("journal: no directory configured")
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = defaultSegmentBytes
	}
	if opts.HardLimitBytes > 0 && opts.MaxUnshippedBytes > opts.HardLimitBytes {
		return nil, fmt.Errorf("journal: max_unshipped_bytes %d above hard_limit_bytes %d", opts.MaxUnshippedBytes, opts.HardLimitBytes)
	}
	if opts.RetentionInterval <= 0 {
		opts.RetentionInterval = 10 * time.Minute
	}
	if opts.Sync == nil {
		opts.Sync = (*os.File).Sync
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	j := &Journal{
		opts:       opts,
		log:        opts.Logger.Named("journal"),
		reqs:       make(chan *appendReq, maxBatchRecords),
		writerDone: make(chan struct{}),
		stop:       make(chan struct{}),
		subs:       map[chan struct{}]struct{}{},
		batchSizes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "railswitch_journal_commit_batch_records",
			Help:    "Records per group commit (one write and at most one fsync).",
			Buckets: prometheus.ExponentialBuckets(1, 4, 7),
		}),
	}
	if err := j.recover(); err != nil {
		return nil, err
	}
	shipped, err := loadCheckpoints(opts.Dir)
	if err != nil {
		j.f.Close()
		return nil, err
	}
	for name, p := range shipped {
		if p.Seq > j.committedSeq.Load() || p.Bytes > j.committedPos.Load() {
			j.f.Close()
			return nil, fmt.Errorf("journal: checkpoint of sink %q (sequence %d) is beyond the journal's end (sequence %d)",
				name, p.Seq, j.committedSeq.Load())
		}
	}
	j.shipped = shipped
	if err := j.registerMetrics(); err != nil {
		j.f.Close()
		return nil, err
	}
	j.log.Info("journal open", zap.String("dir", opts.Dir), zap.Int("segments", len(j.segs)),
		zap.Uint64("last_seq", j.committedSeq.Load()), zap.Int64("unshipped_bytes", j.Unshipped()))
	go j.writeLoop()
	if opts.RetentionDays > 0 {
		j.bgDone.Add(1)
		go j.retentionLoop()
	}
	return j, nil
}

// recover loads the segment list, checks that the segments follow each other, recovers the last one and
// opens it for appending. With no segment yet it creates the first.
func (j *Journal) recover() error {
	idx, err := listSegments(j.opts.Dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	var sizes []int64
	for i, n := range idx {
		s := segment{index: n, path: filepath.Join(j.opts.Dir, segmentName(n))}
		size, err := readSegmentHeader(&s)
		if errors.Is(err, errBadHeader) && i == len(idx)-1 && size <= segHeaderSize {
			// A crash while rolling left a new segment without a complete header and without records.
			j.log.Warn("removing segment with incomplete header", zap.String("segment", segmentName(n)))
			if err := os.Remove(s.path); err != nil {
				return fmt.Errorf("journal: %w", err)
			}
			if err := j.syncDir(); err != nil {
				return err
			}
			break
		}
		if err != nil {
			return fmt.Errorf("journal: segment %s: %w", segmentName(n), err)
		}
		if i > 0 {
			prev := j.segs[i-1]
			if frames := sizes[i-1] - segHeaderSize; s.basePos != prev.basePos+frames {
				return &CorruptionError{Segment: segmentName(prev.index), Offset: sizes[i-1],
					Reason: fmt.Sprintf("segment ends at stream position %d, next segment starts at %d", prev.basePos+frames, s.basePos)}
			}
		}
		j.segs = append(j.segs, s)
		sizes = append(sizes, size)
	}
	if len(j.segs) == 0 {
		return j.createSegment(1, 1, 0)
	}
	last := j.segs[len(j.segs)-1]
	lastSeq, size, err := recoverSegment(last, j.syncFile)
	if err != nil {
		return err
	}
	if size < sizes[len(sizes)-1] {
		j.log.Warn("truncated torn tail", zap.String("segment", segmentName(last.index)),
			zap.Int64("offset", size), zap.Int64("bytes", sizes[len(sizes)-1]-size))
	}
	f, err := os.OpenFile(last.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.f, j.fileSize, j.nextSeq = f, size, lastSeq+1
	j.committedSeq.Store(lastSeq)
	j.committedPos.Store(last.basePos + size - segHeaderSize)
	return nil
}

// readSegmentHeader fills s.firstSeq and s.basePos from the file and returns the file size.
func readSegmentHeader(s *segment) (int64, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	h := make([]byte, segHeaderSize)
	if _, err := io.ReadFull(f, h); err != nil {
		return st.Size(), errBadHeader
	}
	s.firstSeq, s.basePos, err = decodeSegmentHeader(h)
	return st.Size(), err
}

// createSegment makes a segment file with its header durable, then makes it the active one.
func (j *Journal) createSegment(index int, firstSeq uint64, basePos int64) error {
	s := segment{index: index, firstSeq: firstSeq, basePos: basePos, path: filepath.Join(j.opts.Dir, segmentName(index))}
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if _, err := f.Write(encodeSegmentHeader(firstSeq, basePos)); err != nil {
		f.Close()
		return fmt.Errorf("journal: %w", err)
	}
	if err := j.syncFile(f); err != nil {
		f.Close()
		return fmt.Errorf("journal: %w", err)
	}
	if err := j.syncDir(); err != nil {
		f.Close()
		return err
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f, j.fileSize, j.nextSeq = f, segHeaderSize, firstSeq
	j.mu.Lock()
	j.segs = append(j.segs, s)
	j.mu.Unlock()
	j.committedSeq.Store(firstSeq - 1)
	j.committedPos.Store(basePos)
	return nil
}

func (j *Journal) syncFile(f *os.File) error {
	if !j.opts.Fsync {
		return nil
	}
	return j.opts.Sync(f)
}

// syncDir makes file creations, renames and removals in the directory durable.
func (j *Journal) syncDir() error {
	if !j.opts.Fsync {
		return nil
	}
	d, err := os.Open(j.opts.Dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer d.Close()
	if err := j.opts.Sync(d); err != nil {
		return fmt.Errorf("journal: sync %s: %w", j.opts.Dir, err)
	}
	return nil
}

// Close waits for queued appends, then closes the active segment. Appends after Close fail with ErrClosed.
func (j *Journal) Close() error {
	j.closeMu.Lock()
	if j.closed {
		j.closeMu.Unlock()
		return ErrClosed
	}
	j.closed = true
	close(j.reqs)
	j.closeMu.Unlock()
	<-j.writerDone
	close(j.stop)
	j.bgDone.Wait()
	err := j.syncFile(j.f)
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// LastSeq returns the sequence number of the last durable record (0 for an empty journal).
func (j *Journal) LastSeq() uint64 { return j.committedSeq.Load() }

// End returns the position after the last durable record. Read during a commit, the two halves may come
// from consecutive commits: good for lag figures, not for checkpoints (those come from Reader entries).
func (j *Journal) End() Position {
	return Position{Seq: j.committedSeq.Load(), Bytes: j.committedPos.Load()}
}

// subscribe returns a channel that receives a signal after each commit; cancel with unsubscribe.
func (j *Journal) subscribe() chan struct{} {
	ch := make(chan struct{}, 1)
	j.mu.Lock()
	j.subs[ch] = struct{}{}
	j.mu.Unlock()
	return ch
}

func (j *Journal) unsubscribe(ch chan struct{}) {
	j.mu.Lock()
	delete(j.subs, ch)
	j.mu.Unlock()
}

// firstAvailable returns the position before the oldest record still on disk.
func (j *Journal) firstAvailable() Position {
	j.mu.Lock()
	defer j.mu.Unlock()
	return Position{Seq: j.segs[0].firstSeq - 1, Bytes: j.segs[0].basePos}
}

// segmentFor returns the segment that holds seq (or would hold it next) and the one after it, if any.
func (j *Journal) segmentFor(seq uint64) (s segment, next *segment, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	i := sort.Search(len(j.segs), func(i int) bool { return j.segs[i].firstSeq > seq }) - 1
	if i < 0 {
		return segment{}, nil, false
	}
	if i+1 < len(j.segs) {
		n := j.segs[i+1]
		next = &n
	}
	return j.segs[i], next, true
}
