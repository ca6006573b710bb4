package server

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// testRedis returns the address of the machine's Redis (REDIS_ADDR, default 127.0.0.1:6379) and a key prefix
// unique to this run, whose keys are deleted afterwards. Without Redis the test fails under CI and is skipped
// elsewhere.
func testRedis(t *testing.T) (*redis.Client, string, string) {
	t.Helper()
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("this test needs Redis at %s (set REDIS_ADDR): %v", addr, err)
		}
		t.Skipf("skipping: no Redis at %s (set REDIS_ADDR; under CI this fails): %v", addr, err)
	}
	prefix := fmt.Sprintf("railswitch:server-test:%d:%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		keys, err := rdb.Keys(ctx, "{"+prefix+"}:*").Result()
		if err == nil && len(keys) > 0 {
			err = rdb.Del(ctx, keys...).Err()
		}
		if err != nil {
			t.Errorf("cleaning up test keys: %v", err)
		}
	})
	return rdb, addr, prefix
}

// TestClusterWideAcquirerLimitRefusesOverItsRateThroughRedis: the demo with a redis: section and a cluster-wide
// limit of one purchase a second on bank A (refusing while Redis is down, so an approval proves Redis
// answered) starts against the real Redis; a second bank A purchase within the second gets 91 and never
// reaches the bank, while bank B, another acquirer, still approves.
func TestClusterWideAcquirerLimitRefusesOverItsRateThroughRedis(t *testing.T) {
	rdb, addr, prefix := testRedis(t)
	d := startTestDemo(t)
	editFile(t, d.Dir, "config.yaml", "limits: limits.yaml\n",
		"limits: limits.yaml\nredis: {address: \""+addr+"\", db: 0, dial_timeout: 1s, read_timeout: 500ms, write_timeout: 500ms}\n")
	editFile(t, d.Dir, "limits.yaml", "terminal:\n", "cluster: {key_prefix: \""+prefix+"\", timeout: 500ms}\n"+
		"acquirer:\n  overrides:\n    bank-a: {rate: 1, burst: 1, cluster: true, on_redis_down: refuse}\nterminal:\n")
	restartSwitch(t, d)

	tt := dialTerminal(t, d.Channels()[0].Addr(), "22003600", "104512541110001")
	tt.signOn()
	if rc := tt.purchase(cupCard, 100).String(39); rc != "00" {
		t.Fatalf("first bank A purchase answered %q, want 00", rc)
	}
	before := balance(d.BankA)
	if rc := tt.purchase(cupCard, 100).String(39); rc != "91" {
		t.Fatalf("second bank A purchase within the second answered %q, want 91", rc)
	}
	if balance(d.BankA) != before {
		t.Fatal("a refused purchase reached the bank")
	}
	if rc := tt.purchase("4012345678909", 100).String(39); rc != "00" {
		t.Fatalf("bank B purchase answered %q, want 00 (the limit is bank A's)", rc)
	}
	keys, err := rdb.Keys(context.Background(), "{"+prefix+"}:*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("no limit state in Redis under %s (%v)", prefix, err)
	}
}

func TestRedisSectionIsValidated(t *testing.T) {
	tests := []struct {
		name, redis string
		wantErr     bool
	}{
		{"full section", `{address: "127.0.0.1:6379", password_env: REDIS_PASSWORD, db: 2, dial_timeout: 1s, read_timeout: 200ms, write_timeout: 200ms, pool_size: 20}`, false},
		{"negative db", `{address: "127.0.0.1:6379", db: -1}`, true},
		{"unknown key", `{addr: "127.0.0.1:6379"}`, true},
		{"bad duration", `{address: "127.0.0.1:6379", read_timeout: soon}`, true},
	}
	base := "node: {id: n}\nchannels: [{name: pos, listen: \"127.0.0.1:0\", spec: cup-pos}]\nterminals: t.yaml\n" +
		"routes: r.yaml\njournal: {dir: j}\nreversals: {dir: r, key: k}\n"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("config.yaml", []byte(base+"redis: "+tc.redis+"\n"))
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error: %v", err, tc.wantErr)
			}
			if err == nil && (cfg.Redis.DB != 2 || time.Duration(cfg.Redis.ReadTimeout) != 200*time.Millisecond) {
				t.Fatalf("parsed %+v", cfg.Redis)
			}
		})
	}
}

func TestRedisClientHonoursContextDeadlines(t *testing.T) {
	t.Setenv("TEST_REDIS_PASSWORD", "secret")
	c := redisClient(RedisConfig{Address: "127.0.0.1:6379", PasswordEnv: "TEST_REDIS_PASSWORD", DB: 3})
	defer c.Close()
	o := c.Options()
	if !o.ContextTimeoutEnabled || o.Password != "secret" || o.DB != 3 || o.ReadTimeout != 500*time.Millisecond {
		t.Fatalf("options: context timeouts %v, db %d, read timeout %v", o.ContextTimeoutEnabled, o.DB, o.ReadTimeout)
	}
	if redisClient(RedisConfig{}) != nil {
		t.Fatal("a client without an address")
	}
}
