package server

import (
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisClient builds the client of the redis: section, or nil when it names no address. It does not connect:
// the limiter marks Redis down at its first failed call and probes it until it answers.
func redisClient(c RedisConfig) *redis.Client {
	if c.Address == "" {
		return nil
	}
	timeout := func(d Duration, def time.Duration) time.Duration {
		if d == 0 {
			return def
		}
		return time.Duration(d)
	}
	opts := &redis.Options{Addr: c.Address, DB: c.DB, PoolSize: c.PoolSize, ContextTimeoutEnabled: true,
		DialTimeout: timeout(c.DialTimeout, time.Second), ReadTimeout: timeout(c.ReadTimeout, 500*time.Millisecond),
		WriteTimeout: timeout(c.WriteTimeout, 500*time.Millisecond)}
	if c.PasswordEnv != "" {
		opts.Password = os.Getenv(c.PasswordEnv)
	}
	return redis.NewClient(opts)
}
