package limits

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// quietRedisLog drops go-redis's own log lines (dial failures while a test cuts Redis off are expected).
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

// TestMain also proves that closed limiters leave no goroutine behind (the lease renewal loop).
func TestMain(m *testing.M) {
	redis.SetLogger(quietRedisLog{})
	goleak.VerifyTestMain(m)
}
