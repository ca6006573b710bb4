package nodestate

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// quietRedisLog drops go-redis's own log lines (dial failures while a test cuts Redis off are expected).
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

// TestMain also proves that closed leases leave no renewal goroutine behind.
func TestMain(m *testing.M) {
	redis.SetLogger(quietRedisLog{})
	// gnet's default worker pool (imported through flow) starts its housekeeping at init.
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"))
}

var testSeq atomic.Int64

// redisAddr is the machine's Redis (REDIS_ADDR, default 127.0.0.1:6379).
func redisAddr() string {
	if a := os.Getenv("REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// newClient returns a client of addr that honours context deadlines, closed when the test ends.
func newClient(t testing.TB, addr string) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1,
		DialTimeout: 2 * time.Second, PoolSize: 16})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// realRedis returns a client of the machine's Redis and a key prefix unique to this test whose keys are
// deleted afterwards. Without Redis the test fails under CI and is skipped elsewhere.
func realRedis(t testing.TB) (*redis.Client, string) {
	rdb := newClient(t, redisAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("test needs Redis at %s (set REDIS_ADDR): %v", redisAddr(), err)
		}
		t.Skipf("skipping: no Redis at %s (set REDIS_ADDR; under CI this fails): %v", redisAddr(), err)
	}
	prefix := fmt.Sprintf("rstest:nodestate:%d:%d:%d", os.Getpid(), time.Now().UnixNano(), testSeq.Add(1))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var keys []string
		iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		err := iter.Err()
		if err == nil && len(keys) > 0 {
			err = rdb.Del(ctx, keys...).Err()
		}
		if err != nil {
			t.Errorf("cleaning up test keys: %v", err)
		}
	})
	return rdb, prefix
}

// ctxT returns a context with a generous deadline for one step of a test.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
