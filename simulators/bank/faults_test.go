package bank

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestFaultsValidate(t *testing.T) {
	tests := []struct {
		name string
		f    Faults
		ok   bool
	}{
		{"zero value", Faults{}, true},
		{"every fault at once", Faults{LatencyMS: 1, JitterMS: 1, NoReply: 0.1, Late: 0.1, LateMS: 100, DisconnectAfter: 5,
			Garbage: 0.1, WrongMAC: 0.1, Duplicate: 0.1, Stall: true}, true},
		{"share above 1", Faults{NoReply: 1.5}, false},
		{"negative share", Faults{Duplicate: -0.1}, false},
		{"negative latency", Faults{LatencyMS: -1}, false},
		{"late without a delay", Faults{Late: 0.5}, false},
		{"negative disconnect count", Faults{DisconnectAfter: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.f.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func seeded() *lockedRand { return &lockedRand{r: rand.New(rand.NewPCG(7, 9))} }

func TestLatencyDistributions(t *testing.T) {
	const n = 4000
	tests := []struct {
		name             string
		f                Faults
		lo, hi, mean, sd float64 // ms; the sample mean and stddev must be within 10% (sd: of mean when 0)
	}{
		{"fixed", Faults{LatencyMS: 5}, 5, 5, 5, 0},
		{"fixed plus uniform jitter", Faults{LatencyMS: 10, JitterMS: 20}, 10, 30, 20, 20 / math.Sqrt(12)},
		{"normal", Faults{NormalMeanMS: 50, NormalStddevMS: 10, LatencyMS: 999}, 0, 200, 50, 10},
		{"normal clipped at zero", Faults{NormalMeanMS: 0, NormalStddevMS: 10}, 0, 100, 10 / math.Sqrt(2*math.Pi), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := seeded()
			var sum, sq float64
			for i := 0; i < n; i++ {
				a := tt.f.decide(r)
				ms := float64(a.delay) / float64(time.Millisecond)
				if ms < tt.lo || ms > tt.hi {
					t.Fatalf("delay %.3f ms outside [%v, %v]", ms, tt.lo, tt.hi)
				}
				sum += ms
				sq += ms * ms
			}
			mean := sum / n
			sd := math.Sqrt(sq/n - mean*mean)
			if math.Abs(mean-tt.mean) > 0.1*tt.mean+1e-9 {
				t.Errorf("mean %.3f, want %.3f", mean, tt.mean)
			}
			if tt.sd > 0 && math.Abs(sd-tt.sd) > 0.1*tt.sd {
				t.Errorf("stddev %.3f, want %.3f", sd, tt.sd)
			}
		})
	}
}

func TestSharesAreDrawnInProportion(t *testing.T) {
	f := Faults{NoReply: 0.25}
	r := seeded()
	dropped := 0
	for i := 0; i < 4000; i++ {
		if f.decide(r).drop {
			dropped++
		}
	}
	if dropped < 900 || dropped > 1100 {
		t.Errorf("%d of 4000 dropped, want about 1000", dropped)
	}
}

func TestFixedLatencyDelaysTheReply(t *testing.T) {
	spec := mustSpec(t, "iso87-ascii")
	_, addr := startBank(t, Config{Spec: spec, Faults: Faults{LatencyMS: 150}})
	c := dial(t, addr, spec)
	start := time.Now()
	c.roundTrip(purchase(t, spec, testPAN, "000001", "000000000100"))
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("reply after %v, want at least 150ms", d)
	}
}

func TestNoReplyStillAppliesTheRequest(t *testing.T) {
	spec := mustSpec(t, "iso87-ascii")
	s, addr := startBank(t, Config{Spec: spec, Rules: testRules(), Faults: Faults{NoReply: 1}})
	c := dial(t, addr, spec)
	c.send(purchase(t, spec, testPAN, "000001", "000000000100"))
	if _, err := c.frame(300 * time.Millisecond); err != errTimeout {
		t.Fatalf("got %v, want no reply", err)
	}
	if b, _ := s.Ledger().Balance(testPAN); b != 9900 {
		t.Errorf("balance %d, want 9900: the bank processed the request it did not answer", b)
	}
}

func TestLateReplyComesAfterTheDelay(t *testing.T) {
	spec := mustSpec(t, "iso87-ascii")
	_, addr := startBank(t, Config{Spec: spec, Faults: Faults{Late: 1, LateMS: 400}})
	c := dial(t, addr, spec)
	c.send(purchase(t, spec, testPAN, "000001", "000000000100"))
	if _, err := c.frame(200 * time.Millisecond); err != errTimeout {
		t.Fatalf("got %v before the late delay", err)
	}
	if r := c.reply(2 * time.Second); r.String(11) != "000001" {
		t.Errorf("late reply 11=%q", r.String(11))
	}
}

func TestDisconnectAfterN(t *testing.T) {
	spec := mustSpec(t, "iso87-ascii")
	_, addr := startBank(t, Config{Spec: spec, Faults: Faults{DisconnectAfter: 3}})
	c := dial(t, addr, spec)
	for i := 1; i <= 2; i++ {
		c.roundTrip(purchase(t, spec, testPAN, "00000"+string(rune('0'+i)), "000000000100"))
	}
	c.send(purchase(t, spec, testPAN, "000003", "000000000100"))
	if _, err := c.frame(time.Second); err != io.EOF {
		t.Fatalf("third request: got %v, want the connection closed", err)
	}
}

func TestGarbageReplyIsAFrameThatDoesNotDecode(t *testing.T) {
	for _, specName := range []string{"iso87-ascii", "iso87-binary", "iso87-ebcdic"} {
		t.Run(specName, func(t *testing.T) {
			spec := mustSpec(t, specName)
			_, addr := startBank(t, Config{Spec: spec, Faults: Faults{Garbage: 1}})
			c := dial(t, addr, spec)
			c.send(purchase(t, spec, testPAN, "000001", "000000000100"))
			body, err := c.frame(time.Second)
			if err != nil {
				t.Fatal(err)
			}
			m := mustMessage(t, specName)
			if err := m.UnpackFrame(spec.Framing(), body); err == nil || m.MTI() != "" {
				t.Errorf("garbage decoded: MTI %q, err %v", m.MTI(), err)
			}
		})
	}
}

func TestWrongMACFault(t *testing.T) {
	spec := mustSpec(t, "iso87-ascii")
	wire, _ := macWireLen(spec)
	_, addr := startBank(t, Config{Spec: spec, Keys: Keys{ZAK: testKey}, Faults: Faults{WrongMAC: 1}})
	c := dial(t, addr, spec)
	p := purchase(t, spec, testPAN, "000001", "000000000100")
	macMessage(t, p, testKey, wire)
	r := c.roundTrip(p)
	if r.String(39) != "00" || !r.Has(64) || macOK(t, r, testKey, wire) {
		t.Errorf("39=%q MAC present %v, verifies %v; want an approval with a MAC that fails", r.String(39), r.Has(64), macOK(t, r, testKey, wire))
	}
}

func TestDuplicateReplyIsSentTwice(t *testing.T) {
	spec := mustSpec(t, "iso87-ascii")
	_, addr := startBank(t, Config{Spec: spec, Faults: Faults{Duplicate: 1}})
	c := dial(t, addr, spec)
	c.send(purchase(t, spec, testPAN, "000001", "000000000100"))
	a, err1 := c.frame(time.Second)
	b, err2 := c.frame(time.Second)
	if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
		t.Fatalf("got %v %v, equal %v; want the same reply twice", err1, err2, bytes.Equal(a, b))
	}
}

func TestStallStopsReadingUntilCleared(t *testing.T) {
	spec := mustSpec(t, "iso87-ascii")
	s, addr := startBank(t, Config{Spec: spec})
	ctl := httptest.NewServer(s.ControlHandler())
	defer ctl.Close()
	c := dial(t, addr, spec)
	c.roundTrip(purchase(t, spec, testPAN, "000001", "000000000100")) // the connection reader is running
	put(t, ctl.URL+"/faults", `{"stall": true}`, http.StatusOK)
	c.send(purchase(t, spec, testPAN, "000002", "000000000100"))
	if _, err := c.frame(300 * time.Millisecond); err != errTimeout {
		t.Fatalf("stalled bank answered: %v", err)
	}
	put(t, ctl.URL+"/faults", `{"stall": false}`, http.StatusOK)
	if r := c.reply(2 * time.Second); r.String(11) != "000002" {
		t.Errorf("after the stall 11=%q", r.String(11))
	}
}

func TestControlEndpoint(t *testing.T) {
	s, _ := startBank(t, Config{Faults: Faults{LatencyMS: 5}})
	ctl := httptest.NewServer(s.ControlHandler())
	defer ctl.Close()

	var got Faults
	getJSON(t, ctl.URL+"/faults", &got)
	if got.LatencyMS != 5 {
		t.Fatalf("GET /faults latency %v, want 5", got.LatencyMS)
	}
	put(t, ctl.URL+"/faults", `{"no_reply": 0.5}`, http.StatusOK)
	if f := s.Faults(); f.NoReply != 0.5 || f.LatencyMS != 5 {
		t.Errorf("after a partial PUT: %+v, want no_reply 0.5 and latency kept", f)
	}
	for _, bad := range []string{`{"no_reply": 2}`, `{"bogus": 1}`, `not json`} {
		put(t, ctl.URL+"/faults", bad, http.StatusBadRequest)
	}
	if s.Faults().NoReply != 0.5 {
		t.Error("a refused PUT changed the faults")
	}
	resp, err := http.Get(ctl.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"process_cpu_seconds_total", "bank_sim_connections"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func put(t *testing.T, url, body string, status int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != status {
		t.Fatalf("PUT %s: status %d, want %d", body, resp.StatusCode, status)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
