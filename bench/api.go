package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// apiEndpoint is one request the API benchmark repeats.
type apiEndpoint struct {
	name   string
	method string
	path   string
	body   []byte
	want   int
}

var apiEndpoints = []apiEndpoint{
	{name: "GET /", method: "GET", path: "/", want: http.StatusOK},
	{name: "PUT /machine-config", method: "PUT", path: "/machine-config", body: []byte(`{"vcpu_count": 1, "mem_size_mib": 128}`), want: http.StatusNoContent},
}

// apiThroughputConns is how many connections the throughput test keeps busy.
const apiThroughputConns = 4

// apiResult holds, per endpoint and side (0 ember, 1 baseline), every
// latency sample in µs and one throughput figure per round in req/s.
type apiResult struct {
	lat  [2][2][]float64
	tput [2][2][]float64
}

// runAPI measures ember's real binary and the bare net/http server side by
// side: both run for the whole test, and each round runs the same block of
// requests against ember, then the baseline, with the same client code.
func (e *env) runAPI(ctx context.Context) (*apiResult, error) {
	dir := filepath.Join(e.tmp, "api")
	em, err := e.startEmber(ctx, filepath.Join(dir, "ember"), "")
	if err != nil {
		return nil, err
	}
	defer em.close()
	bareSock := filepath.Join(dir, "bare.sock")
	bare, err := startProc("bareapi", []string{e.bareBin, "--api-sock", bareSock}, dir, nil)
	if err != nil {
		return nil, err
	}
	defer bare.stop(true)
	wctx, cancel := context.WithTimeout(ctx, apiReadyTimeout)
	_, err = bare.out.wait(wctx, 0, lineAPIStarted)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("bareapi did not start: %w", err)
	}
	socks := [2]string{em.sock, bareSock}
	clients := [2]*apiClient{em.client, newAPIClient(bareSock)}
	defer clients[1].Close()

	for _, ep := range apiEndpoints {
		for s := range 2 {
			if _, err := latency(ctx, clients[s], ep, 300); err != nil {
				return nil, fmt.Errorf("warm-up %s: %w", ep.name, err)
			}
		}
	}
	res := &apiResult{}
	for r := 0; r < e.cfg.apiRounds; r++ {
		for i, ep := range apiEndpoints {
			for s := range 2 {
				l, err := latency(ctx, clients[s], ep, e.cfg.apiRequests)
				if err != nil {
					return nil, err
				}
				res.lat[i][s] = append(res.lat[i][s], l...)
			}
		}
		for i, ep := range apiEndpoints {
			for s := range 2 {
				t, err := throughput(ctx, socks[s], ep, e.cfg.apiThroughputFor)
				if err != nil {
					return nil, err
				}
				res.tput[i][s] = append(res.tput[i][s], t)
			}
		}
		e.progress("api: round %d/%d done", r+1, e.cfg.apiRounds)
	}
	return res, nil
}

// latency sends n requests one after the other on one connection and
// returns each round trip in µs.
func latency(ctx context.Context, c *apiClient, ep apiEndpoint, n int) ([]float64, error) {
	out := make([]float64, 0, n)
	for range n {
		t0 := time.Now()
		status, body, err := c.Do(ctx, ep.method, ep.path, ep.body)
		d := time.Since(t0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ep.name, err)
		}
		if status != ep.want {
			return nil, fmt.Errorf("%s: status %d, want %d: %s", ep.name, status, ep.want, body)
		}
		out = append(out, float64(d)/float64(time.Microsecond))
	}
	return out, nil
}

// throughput keeps apiThroughputConns connections busy for d and returns
// the completed requests per second.
func throughput(ctx context.Context, sock string, ep apiEndpoint, d time.Duration) (float64, error) {
	var done atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for range apiThroughputConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newAPIClient(sock)
			defer c.Close()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				status, body, err := c.Do(ctx, ep.method, ep.path, ep.body)
				if err == nil && status != ep.want {
					err = fmt.Errorf("status %d, want %d: %s", status, ep.want, body)
				}
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("%s throughput: %w", ep.name, err) })
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return float64(done.Load()) / time.Since(start).Seconds(), nil
}
