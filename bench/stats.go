package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Latencies collects durations from many goroutines and answers percentiles.
type Latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

// Add records one duration.
func (l *Latencies) Add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// Len is the number of recorded durations.
func (l *Latencies) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

// Percentile returns the p-th percentile (0 < p ≤ 100) by the nearest-rank method, or 0 when
// nothing was recorded.
func (l *Latencies) Percentile(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return percentile(l.d, p)
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	rank = max(0, min(rank, len(s)-1))
	return s[rank]
}

// ms converts a duration to fractional milliseconds for figures.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ProcMemory is a process's resident set size now and at its peak, in MiB, from
// /proc/<pid>/status (Linux).
type ProcMemory struct {
	RSSMiB  float64
	PeakMiB float64
}

// ReadProcMemory reads the memory of pid ("self" for this process).
func ReadProcMemory(pid string) (ProcMemory, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return ProcMemory{}, fmt.Errorf("read memory of process %s: %w", pid, err)
	}
	var m ProcMemory
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		kb, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			m.RSSMiB = kb / 1024
		case "VmHWM":
			m.PeakMiB = kb / 1024
		}
	}
	return m, nil
}
