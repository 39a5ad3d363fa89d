// The delivery benchmark's provider (benchmarks/delivery.py): an HTTP endpoint in the shape of
// Loa's http channel contract (POST a task, Idempotency-Key header) that answers after -delay
// with a 503 for a random -errors fraction of calls, counts every call by itself and can go
// down (no listener, every connection cut) for a while on request.
//
// Written in Go so that the provider is not what limits the figure: net/http serves each call
// on its own goroutine, a 50 ms answer costs a timer, not a thread.
//
//	POST /send                    on -port: the provider, one task (its key in Idempotency-Key)
//	POST /bulk                    on -port: {"messages": [task, ...]} answered with
//	                              {"results": [{"status": 200}, ...]}, one per message in
//	                              order (LOA_DELIVERY_HTTP_BATCH > 1); errors per message
//	GET  /stats                   on -control: counts as JSON
//	POST /down?seconds=30         on -control: stop listening for that long, then listen again
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

type counts struct {
	mu        sync.Mutex
	requests  int64 // HTTP requests (a bulk request carries many messages)
	calls     int64 // messages answered
	ok        int64
	errors    int64
	delivered map[string]int32 // 200 answers per idempotency key
	firstOK   int64            // unix ns
	lastOK    int64
	perSecond map[int64]int64 // 200 answers per unix second
	downs     int
	downFrom  int64
	downTo    int64
}

func main() {
	port := flag.Int("port", 0, "provider port")
	control := flag.Int("control", 0, "control port")
	delay := flag.Duration("delay", 50*time.Millisecond, "answer after this long")
	errorRate := flag.Float64("errors", 0.01, "fraction of calls answered 503")
	flag.Parse()
	c := &counts{delivered: map[string]int32{}, perSecond: map[int64]int64{}}

	data, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dataPort := data.Addr().(*net.TCPAddr).Port
	ctl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *control))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	// settle counts one message: delivered (its key counted) or a 503
	settle := func(key string) bool {
		failed := rand.Float64() < *errorRate
		now := time.Now().UnixNano()
		c.mu.Lock()
		defer c.mu.Unlock()
		c.calls++
		if failed || key == "" {
			c.errors++
			return false
		}
		c.ok++
		c.delivered[key]++
		if c.firstOK == 0 {
			c.firstOK = now
		}
		c.lastOK = now
		c.perSecond[now/1e9]++
		return true
	}
	bulk := func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Messages []struct {
				Key string `json:"idempotency_key"`
			} `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Messages) == 0 {
			http.Error(w, "a bulk call is {\"messages\": [task, ...]}", http.StatusBadRequest)
			return
		}
		if *delay > 0 {
			time.Sleep(*delay)
		}
		type result struct {
			Status int `json:"status"`
		}
		results := make([]result, len(body.Messages))
		for i, m := range body.Messages {
			results[i].Status = http.StatusOK
			if !settle(m.Key) {
				results[i].Status = http.StatusServiceUnavailable
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"results": results})
	}
	send := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.requests++
		c.mu.Unlock()
		if r.URL.Path == "/bulk" {
			bulk(w, r)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		_, _ = io.Copy(io.Discard, r.Body)
		if *delay > 0 {
			time.Sleep(*delay)
		}
		if !settle(key) {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})

	var mu sync.Mutex
	serve := func(l net.Listener) *http.Server {
		s := &http.Server{Handler: send}
		go func() { _ = s.Serve(l) }()
		return s
	}
	mu.Lock()
	server := serve(data)
	mu.Unlock()

	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		repeats := int64(0)
		for _, n := range c.delivered {
			if n > 1 {
				repeats += int64(n - 1)
			}
		}
		out := map[string]any{
			"requests": c.requests, "calls": c.calls, "ok": c.ok, "errors": c.errors,
			"distinct_delivered": len(c.delivered), "repeats": repeats,
			"first_ok_ns": c.firstOK, "last_ok_ns": c.lastOK, "per_second": c.perSecond,
			"downs": c.downs, "down_from_ns": c.downFrom, "down_to_ns": c.downTo,
		}
		c.mu.Unlock()
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) {
		seconds, err := time.ParseDuration(r.URL.Query().Get("seconds") + "s")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		// Close: the listener and every connection, idle or busy, go at once (refused, reset)
		_ = server.Close()
		c.mu.Lock()
		c.downs++
		c.downFrom = time.Now().UnixNano()
		c.mu.Unlock()
		mu.Unlock()
		go func() {
			time.Sleep(seconds)
			for {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", dataPort))
				if err == nil {
					mu.Lock()
					server = serve(l)
					c.mu.Lock()
					c.downTo = time.Now().UnixNano()
					c.mu.Unlock()
					mu.Unlock()
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		w.WriteHeader(http.StatusAccepted)
	})
	fmt.Printf("listening %d %d\n", dataPort, ctl.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	ctlServer := &http.Server{Handler: mux}
	_ = ctlServer.Serve(ctl)
	_ = context.Background()
}
