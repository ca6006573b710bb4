package journal

import (
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
)

// Alarm is the state of the unshipped-bytes alarm, passed to Options.OnAlarm when it changes.
type Alarm struct {
	Active         bool
	UnshippedBytes int64
	Threshold      int64
}

// Unshipped returns the bytes of records that some sink has not yet shipped; records count as unshipped
// until a sink exists to ship them.
func (j *Journal) Unshipped() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.unshippedLocked()
}

func (j *Journal) unshippedLocked() int64 {
	return j.committedPos.Load() - j.minShippedLocked().Bytes
}

// minShippedLocked is the checkpoint of the slowest sink, or the start of the oldest segment without sinks.
func (j *Journal) minShippedLocked() Position {
	if len(j.shipped) == 0 {
		return Position{Seq: j.segs[0].firstSeq - 1, Bytes: j.segs[0].basePos}
	}
	first := true
	var m Position
	for _, p := range j.shipped {
		if first || p.Seq < m.Seq {
			m, first = p, false
		}
	}
	return m
}

func (j *Journal) checkAlarmLocked() {
	th := j.opts.MaxUnshippedBytes
	if th <= 0 {
		return
	}
	un := j.unshippedLocked()
	if on := un >= th; on != j.alarmOn {
		j.alarmOn = on
		if on {
			j.log.Warn("unshipped bytes above threshold: a sink is behind", zap.Int64("unshipped_bytes", un), zap.Int64("threshold", th))
		} else {
			j.log.Info("unshipped bytes back under threshold", zap.Int64("unshipped_bytes", un), zap.Int64("threshold", th))
		}
		if j.opts.OnAlarm != nil {
			j.opts.OnAlarm(Alarm{Active: on, UnshippedBytes: un, Threshold: th})
		}
	}
}

// checkpoint returns the position sink has shipped, if it has a checkpoint.
func (j *Journal) checkpoint(sink string) (Position, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	p, ok := j.shipped[sink]
	return p, ok
}

// commitCheckpoint makes p the durable checkpoint of sink. Retention and the size bound see it at once.
func (j *Journal) commitCheckpoint(sink string, p Position) error {
	if err := writeCheckpoint(j.opts.Dir, sink, p, j.syncFile, j.syncDir); err != nil {
		return err
	}
	j.mu.Lock()
	j.shipped[sink] = p
	j.checkAlarmLocked()
	j.mu.Unlock()
	return nil
}

// Retain deletes the oldest segments whose last write is older than Options.RetentionDays and whose records
// every sink has shipped. The active segment, and any segment after one that must stay, are kept. It returns
// how many segments it deleted.
func (j *Journal) Retain() (int, error) {
	if j.opts.RetentionDays <= 0 {
		return 0, nil
	}
	cutoff := j.opts.Now().Add(-time.Duration(j.opts.RetentionDays) * 24 * time.Hour)
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.shipped) == 0 {
		return 0, nil // nothing is shipped while no sink exists
	}
	shipped := j.minShippedLocked().Seq
	n := 0
	for ; n < len(j.segs)-1; n++ {
		if lastSeq := j.segs[n+1].firstSeq - 1; lastSeq > shipped {
			break
		}
		st, err := os.Stat(j.segs[n].path)
		if err != nil {
			return 0, fmt.Errorf("journal: %w", err)
		}
		if !st.ModTime().Before(cutoff) {
			break
		}
	}
	for i := range n {
		if err := os.Remove(j.segs[i].path); err != nil {
			j.segs = j.segs[i:]
			return i, fmt.Errorf("journal: %w", err)
		}
		j.log.Info("retention removed segment", zap.String("segment", segmentName(j.segs[i].index)))
	}
	j.segs = j.segs[n:]
	if n > 0 {
		return n, j.syncDir()
	}
	return 0, nil
}

func (j *Journal) retentionLoop() {
	defer j.bgDone.Done()
	t := time.NewTicker(j.opts.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
			if _, err := j.Retain(); err != nil {
				j.log.Error("retention failed", zap.Error(err))
			}
		}
	}
}
