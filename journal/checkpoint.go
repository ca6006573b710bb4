package journal

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// A checkpoint file, checkpoint-<sink>.json in the journal directory, holds the Position a sink has shipped.
// It is replaced atomically: written to a temporary file, fsynced, renamed over the old one, and the
// directory fsynced.
type checkpointFile struct {
	Version int    `json:"version"`
	Sink    string `json:"sink"`
	Position
}

const checkpointVersion = 1

// sinkNameRE limits sink names to what is safe in a file name and a metric label.
var sinkNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func checkpointPath(dir, sink string) string { return filepath.Join(dir, "checkpoint-"+sink+".json") }

// loadCheckpoints reads every checkpoint file in dir, keyed by sink name.
func loadCheckpoints(dir string) (map[string]Position, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	out := map[string]Position{}
	for _, e := range entries {
		sink, ok := strings.CutPrefix(e.Name(), "checkpoint-")
		if !ok {
			continue
		}
		if strings.HasSuffix(sink, ".tmp") { // left by a crash before the rename: the old checkpoint stands
			os.Remove(filepath.Join(dir, e.Name()))
			continue
		}
		if sink, ok = strings.CutSuffix(sink, ".json"); !ok || !sinkNameRE.MatchString(sink) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		var c checkpointFile
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, fmt.Errorf("journal: checkpoint %s: %w", e.Name(), err)
		}
		if c.Version != checkpointVersion || c.Sink != sink {
			return nil, fmt.Errorf("journal: checkpoint %s: version %d for sink %q, want version %d for %q",
				e.Name(), c.Version, c.Sink, checkpointVersion, sink)
		}
		out[sink] = c.Position
	}
	return out, nil
}

// writeCheckpoint replaces the checkpoint of sink with p.
func writeCheckpoint(dir, sink string, p Position, syncFile func(*os.File) error, syncDir func() error) error {
	b, err := json.Marshal(checkpointFile{Version: checkpointVersion, Sink: sink, Position: p})
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "checkpoint-*.tmp")
	if err != nil {
		return fmt.Errorf("journal: checkpoint of %s: %w", sink, err)
	}
	tmp := f.Name()
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = syncFile(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, checkpointPath(dir, sink))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("journal: checkpoint of %s: %w", sink, err)
	}
	return syncDir()
}
