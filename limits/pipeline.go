package limits

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// pipeliner sends the script calls (acquire, release) of concurrent requests to Redis together: one sender
// takes whatever calls are waiting (up to maxBatch) and writes them as one pipeline; while it waits for the
// replies the next batch gathers. So a burst of N requests costs one write and one read instead of N of each.
// Every call is still exactly one script run, and its caller still stops waiting at its own deadline.
// (One sender measured best here: more senders make smaller batches.)
type pipeliner struct {
	rdb      redis.UniversalClient
	in       chan *scriptCall
	maxBatch int
	timeout  func() time.Duration
	done     chan struct{} // closed when the sender has exited
}

// scriptCall is one script call waiting to be sent.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
	done   chan struct{} // closed when res and err are set
	res    int
	err    error
}

func newPipeliner(rdb redis.UniversalClient, maxBatch int, timeout func() time.Duration, stop <-chan struct{}) *pipeliner {
	p := &pipeliner{rdb: rdb, in: make(chan *scriptCall, 2*maxBatch), maxBatch: maxBatch, timeout: timeout,
		done: make(chan struct{})}
	go p.send(stop)
	return p
}

// run queues one call and waits for its result or for ctx to end. A call abandoned at its deadline may still
// run in Redis later; like any timed-out call, a lease it takes then expires after lease_ttl.
func (p *pipeliner) run(ctx context.Context, script *redis.Script, keys []string, args ...any) (int, error) {
	c := &scriptCall{script: script, keys: keys, args: args, done: make(chan struct{})}
	select {
	case p.in <- c:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (p *pipeliner) send(stop <-chan struct{}) {
	defer close(p.done)
	batch := make([]*scriptCall, 0, p.maxBatch)
	cmds := make([]*redis.Cmd, 0, p.maxBatch)
	for {
		batch = batch[:0]
		select {
		case <-stop:
			return
		case c := <-p.in:
			batch = append(batch, c)
		}
	collect:
		for len(batch) < p.maxBatch {
			select {
			case c := <-p.in:
				batch = append(batch, c)
			default:
				break collect
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), p.timeout())
		cmds = cmds[:0]
		pipe := p.rdb.Pipeline()
		for _, c := range batch {
			cmds = append(cmds, c.script.EvalSha(ctx, pipe, c.keys, c.args...))
		}
		_, _ = pipe.Exec(ctx) // each command carries its own error
		for i, c := range batch {
			c.res, c.err = 0, cmds[i].Err()
			if redis.HasErrorPrefix(c.err, "NOSCRIPT") { // Redis restarted or flushed its scripts
				c.err = c.script.Load(ctx, p.rdb).Err()
				if c.err == nil {
					c.res, c.err = c.script.EvalSha(ctx, p.rdb, c.keys, c.args...).Int()
				}
			} else if c.err == nil {
				c.res, c.err = cmds[i].Int()
			}
			close(c.done)
		}
		cancel()
	}
}

// wait returns when the sender has exited (after the stop channel given to newPipeliner is closed).
func (p *pipeliner) wait() { <-p.done }
