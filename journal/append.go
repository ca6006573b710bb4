package journal

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sync"

	"go.uber.org/zap"
)

type appendReq struct {
	frame []byte // frame header space followed by the encoded record
	done  chan appendRes
}

type appendRes struct {
	seq uint64
	err error
}

var reqPool = sync.Pool{New: func() any { return &appendReq{done: make(chan appendRes, 1)} }}

// Append journals r and returns its sequence number once the record is durable: written, and fsynced when
// Options.Fsync is set. Concurrent calls share one write and one fsync. It fails with ErrFull at the hard
// limit, with ErrClosed after Close, and with the I/O error that stopped the journal: after a failed write or
// fsync every later Append fails too, since what reached the disk is unknown until Open recovers.
func (j *Journal) Append(r *Record) (uint64, error) {
	if err := r.validate(); err != nil {
		return 0, err
	}
	if lim := j.opts.HardLimitBytes; lim > 0 {
		if un := j.Unshipped(); un >= lim {
			return 0, fmt.Errorf("%w: %d unshipped bytes, limit %d", ErrFull, un, lim)
		}
	}
	req := reqPool.Get().(*appendReq)
	req.frame = appendRecord(append(req.frame[:0], make([]byte, frameHeaderSize)...), r)
	if len(req.frame)-frameHeaderSize > MaxRecordBytes {
		reqPool.Put(req)
		return 0, fmt.Errorf("journal: record %s encodes to more than %d bytes", r.TxnID, MaxRecordBytes)
	}
	j.closeMu.RLock()
	if j.closed {
		j.closeMu.RUnlock()
		reqPool.Put(req)
		return 0, ErrClosed
	}
	j.reqs <- req
	j.closeMu.RUnlock()
	res := <-req.done
	reqPool.Put(req)
	return res.seq, res.err
}

// writeLoop is the single writer: it takes every request waiting in the queue and commits them together.
func (j *Journal) writeLoop() {
	defer close(j.writerDone)
	batch := make([]*appendReq, 0, maxBatchRecords)
	for first := range j.reqs {
		batch = append(batch[:0], first)
		size := len(first.frame)
		// Let appenders that are runnable enqueue first: without fsync a write is so quick that batches would
		// otherwise stay at one record, each paying a syscall and a wake-up. Costs nothing when none is waiting.
		runtime.Gosched()
	drain:
		for len(batch) < maxBatchRecords && size < maxBatchBytes {
			select {
			case r, ok := <-j.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
				size += len(r.frame)
			default:
				break drain
			}
		}
		j.commit(batch, size)
	}
}

// commit writes a batch with one write and one fsync and answers its requests.
func (j *Journal) commit(batch []*appendReq, size int) {
	err := j.failed
	if err == nil && j.fileSize > segHeaderSize && j.fileSize+int64(size) > j.opts.SegmentBytes {
		err = j.roll()
	}
	seq := j.nextSeq
	if err == nil {
		buf := j.buf[:0]
		for _, r := range batch {
			putFrameHeader(r.frame, seq)
			seq++
			buf = append(buf, r.frame...)
		}
		j.buf = buf
		if _, err = j.f.Write(buf); err == nil {
			err = j.syncFile(j.f)
		}
		if err != nil {
			err = fmt.Errorf("journal: writing %s: %w", filepath.Base(j.f.Name()), err)
		}
	}
	if err != nil {
		if j.failed == nil {
			j.failed = err
			j.failedFlag.Store(true)
			j.log.Error("journal stopped; every append fails until the switch restarts", zap.Error(err))
		}
		for _, r := range batch {
			r.done <- appendRes{err: j.failed}
		}
		return
	}
	j.fileSize += int64(len(j.buf))
	first := j.nextSeq
	j.nextSeq = seq
	j.committedPos.Add(int64(len(j.buf)))
	j.committedSeq.Store(seq - 1)
	j.batchSizes.Observe(float64(len(batch)))
	for i, r := range batch {
		r.done <- appendRes{seq: first + uint64(i)}
	}
	j.mu.Lock()
	for ch := range j.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	j.checkAlarmLocked()
	j.mu.Unlock()
}

// roll starts a new segment; the current one is already durable up to its last batch.
func (j *Journal) roll() error {
	j.mu.Lock()
	index := j.segs[len(j.segs)-1].index + 1
	j.mu.Unlock()
	return j.createSegment(index, j.nextSeq, j.committedPos.Load())
}
