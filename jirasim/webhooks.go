package jirasim

import (
	"bytes"
	"container/heap"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
)

// webhookHub owns registrations and outgoing deliveries. Deliveries are asynchronous: events are
// queued as jobs in a due-time heap, one dispatcher hands due jobs to a fixed pool of workers,
// and failed attempts are re-queued with exponential backoff. Nothing spawns a goroutine per
// event, so a burst of changes cannot grow the goroutine count.
type webhookHub struct {
	s    *Sim
	opts DeliveryOptions

	mu       sync.Mutex
	regs     []*registration
	nextID   int64
	knobs    WebhookFaults
	log      []Delivery
	queue    jobHeap
	inflight int
	closed   bool
	seq      uint64 // FIFO tie-break for jobs due at the same instant

	wake   chan struct{}
	work   chan *job
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type registration struct {
	WebhookRegistration
	filter *compiledQuery // nil matches every issue
	secret string
}

// outMsg is one prepared delivery (one event for one registration).
type outMsg struct {
	regID  int64
	url    string
	secret string
	event  string
	body   []byte
}

type job struct {
	msg        outMsg
	identifier string
	attempt    int
	duplicate  bool
	due        time.Time
	seq        uint64
}

type jobHeap []*job

func (h jobHeap) Len() int { return len(h) }
func (h jobHeap) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return h[i].seq < h[j].seq
	}
	return h[i].due.Before(h[j].due)
}
func (h jobHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *jobHeap) Push(x any)   { *h = append(*h, x.(*job)) }
func (h *jobHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	*h = old[:n-1]
	return x
}

func newWebhookHub(s *Sim, o DeliveryOptions) *webhookHub {
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if s.flavor == DataCenter {
		o.MaxAttempts = 1
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	if o.MaxRecorded <= 0 {
		o.MaxRecorded = 10000
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &webhookHub{s: s, opts: o, nextID: 1000, wake: make(chan struct{}, 1), work: make(chan *job), ctx: ctx, cancel: cancel}
	h.wg.Add(1 + o.Workers)
	go h.dispatch()
	for range o.Workers {
		go h.worker()
	}
	return h
}

func (h *webhookHub) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
}

func (h *webhookHub) pushLocked(j *job) {
	h.seq++
	j.seq = h.seq
	heap.Push(&h.queue, j)
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// dispatch hands due jobs to workers.
func (h *webhookHub) dispatch() {
	defer h.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		h.mu.Lock()
		var next *job
		wait := time.Hour
		if len(h.queue) > 0 {
			if d := time.Until(h.queue[0].due); d <= 0 {
				next = heap.Pop(&h.queue).(*job)
				h.inflight++
			} else {
				wait = d
			}
		}
		h.mu.Unlock()
		if next != nil {
			select {
			case h.work <- next:
				continue
			case <-h.ctx.Done():
				return
			}
		}
		timer.Reset(wait)
		select {
		case <-h.ctx.Done():
			return
		case <-h.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func (h *webhookHub) worker() {
	defer h.wg.Done()
	for {
		select {
		case <-h.ctx.Done():
			return
		case j := <-h.work:
			h.attempt(j)
		}
	}
}

// retryable follows Jira Cloud's documented retry policy (JIRA-NOTES.md §6.4).
func retryable(status int) bool {
	switch status {
	case 0, http.StatusRequestTimeout, http.StatusConflict, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return status >= 500
}

func (h *webhookHub) attempt(j *job) {
	start := time.Now()
	d := Delivery{
		Identifier: j.identifier, WebhookID: j.msg.regID, Event: j.msg.event, URL: j.msg.url,
		Attempt: j.attempt, Duplicate: j.duplicate, Time: h.s.Now(), Body: j.msg.body,
	}
	ctx, cancel := context.WithTimeout(h.ctx, h.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.msg.url, bytes.NewReader(j.msg.body))
	if err == nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("User-Agent", "Atlassian Webhook HTTP Client (jirasim)")
		req.Header.Set("X-Atlassian-Webhook-Identifier", j.identifier)
		req.Header.Set("X-Atlassian-Webhook-Flow", "Primary")
		if j.attempt > 1 {
			req.Header.Set("X-Atlassian-Webhook-Retry", strconv.Itoa(j.attempt-1))
		}
		if j.msg.secret != "" {
			mac := hmac.New(sha256.New, []byte(j.msg.secret))
			mac.Write(j.msg.body)
			d.Signature = "sha256=" + hex.EncodeToString(mac.Sum(nil))
			req.Header.Set("X-Hub-Signature", d.Signature)
		}
		var resp *http.Response
		resp, err = h.opts.Client.Do(req)
		if err == nil {
			d.Status = resp.StatusCode
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			_ = resp.Body.Close()
		}
	}
	if err != nil {
		d.Error = err.Error()
	}
	d.Duration = time.Since(start)

	h.mu.Lock()
	defer h.mu.Unlock()
	h.inflight--
	h.recordLocked(d)
	if h.closed || h.ctx.Err() != nil {
		return
	}
	if (err != nil || retryable(d.Status)) && j.attempt < h.opts.MaxAttempts {
		backoff := h.opts.InitialBackoff << (j.attempt - 1)
		if backoff > h.opts.MaxBackoff || backoff <= 0 {
			backoff = h.opts.MaxBackoff
		}
		next := *j
		next.attempt++
		next.due = time.Now().Add(backoff)
		h.pushLocked(&next)
		return
	}
	if err != nil || d.Status >= 300 {
		h.s.log.Info("webhook delivery gave up", slog.String("identifier", j.identifier), slog.Int("attempts", j.attempt), slog.Int("status", d.Status))
	}
}

func (h *webhookHub) recordLocked(d Delivery) {
	if len(h.log) >= h.opts.MaxRecorded {
		h.log = append(h.log[:0], h.log[len(h.log)-h.opts.MaxRecorded+1:]...)
	}
	h.log = append(h.log, d)
}

// enqueue schedules prepared messages, applying the lose/duplicate/delay knobs.
func (h *webhookHub) enqueue(msgs []outMsg) {
	if len(msgs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	for _, m := range msgs {
		id := uuid.NewString()
		if h.knobs.LoseNext > 0 {
			h.knobs.LoseNext--
			h.recordLocked(Delivery{Identifier: id, WebhookID: m.regID, Event: m.event, URL: m.url, Attempt: 1, Lost: true, Time: h.s.Now(), Body: m.body})
			continue
		}
		due := time.Now().Add(h.knobs.Delay)
		h.pushLocked(&job{msg: m, identifier: id, attempt: 1, due: due})
		if h.knobs.Duplicate {
			h.pushLocked(&job{msg: m, identifier: id, attempt: 1, due: due.Add(5 * time.Millisecond), duplicate: true})
		}
	}
}

// issueEvent describes a change that may trigger webhooks.
type issueEvent struct {
	name      string // jira:issue_created | jira:issue_updated
	typeName  string // issue_event_type_name
	idx       uint32
	actor     uint32 // user index
	changelog *changeGroup
}

// prepareLocked builds the deliveries for an event. The caller holds s.mu (read or write); the
// payload is rendered now so that it shows the issue's state right after the change.
func (h *webhookHub) prepareLocked(ev issueEvent) []outMsg {
	s := h.s
	h.mu.Lock()
	regs := slices.Clone(h.regs)
	h.mu.Unlock()
	if len(regs) == 0 {
		return nil
	}
	st := s.st
	now := s.Now()
	var matched []*registration
	for _, r := range regs {
		if !slices.Contains(r.Events, ev.name) {
			continue
		}
		if r.Kind == WebhookDynamic && !now.Before(r.ExpiresAt) {
			continue
		}
		if r.filter != nil && r.filter.root != nil && !r.filter.root.eval(st, &st.issues[ev.idx], ev.idx) {
			continue
		}
		if ev.changelog != nil && len(r.FieldIDsFilter) > 0 {
			hit := slices.ContainsFunc(ev.changelog.items, func(it ChangeItem) bool { return slices.Contains(r.FieldIDsFilter, it.FieldID) })
			if !hit {
				continue
			}
		}
		matched = append(matched, r)
	}
	if len(matched) == 0 {
		return nil
	}
	rc := rctx{base: s.BaseURL(), ver: "2", flavor: s.flavor}
	payload := map[string]any{
		"timestamp":             now.UnixMilli(),
		"webhookEvent":          ev.name,
		"issue_event_type_name": ev.typeName,
		"user":                  s.renderUserLocked(rc, ev.actor+1),
		"issue":                 s.renderIssueLocked(rc, ev.idx, fieldSel{all: true}),
	}
	if ev.changelog != nil {
		items := make([]map[string]any, 0, len(ev.changelog.items))
		for _, it := range ev.changelog.items {
			m := map[string]any{"field": it.Field, "fieldtype": it.FieldType, "from": it.From, "fromString": it.FromString, "to": it.To, "toString": it.ToString}
			if s.flavor == Cloud {
				m["fieldId"] = it.FieldID
			}
			items = append(items, m)
		}
		payload["changelog"] = map[string]any{"id": strconv.FormatInt(ev.changelog.id, 10), "items": items}
	}
	var out []outMsg
	for _, r := range matched {
		if r.Kind == WebhookDynamic {
			payload["matchedWebhookIds"] = []int64{r.ID}
		} else {
			delete(payload, "matchedWebhookIds")
		}
		body, err := json.Marshal(payload)
		if err != nil {
			s.log.Error("render webhook payload", slog.String("error", err.Error()))
			continue
		}
		out = append(out, outMsg{regID: r.ID, url: r.URL, secret: r.secret, event: ev.name, body: body})
	}
	return out
}

// ---- Go API ----

// Webhooks lists every registration (dynamic and admin).
func (s *Sim) Webhooks() []WebhookRegistration {
	h := s.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]WebhookRegistration, 0, len(h.regs))
	for _, r := range h.regs {
		out = append(out, r.WebhookRegistration)
	}
	return out
}

// AddAdminWebhook registers an admin webhook (as an administrator would in System → WebHooks).
func (s *Sim) AddAdminWebhook(spec AdminWebhookSpec) (WebhookRegistration, error) {
	if spec.URL == "" {
		return WebhookRegistration{}, fmt.Errorf("add admin webhook: url is required")
	}
	if len(spec.Events) == 0 {
		return WebhookRegistration{}, fmt.Errorf("add admin webhook: at least one event is required")
	}
	var filter *compiledQuery
	if spec.JQL != "" {
		s.mu.RLock()
		cq, err := compileJQL(spec.JQL, compileCtx{st: s.st, now: s.Now(), me: s.admin + 1})
		s.mu.RUnlock()
		if err != nil {
			return WebhookRegistration{}, fmt.Errorf("add admin webhook: jql: %w", err)
		}
		filter = cq
	}
	h := s.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextID++
	r := &registration{
		WebhookRegistration: WebhookRegistration{ID: h.nextID, Kind: WebhookAdmin, Name: spec.Name, URL: spec.URL,
			Events: slices.Clone(spec.Events), JQLFilter: spec.JQL, HasSecret: spec.Secret != ""},
		filter: filter, secret: spec.Secret,
	}
	h.regs = append(h.regs, r)
	return r.WebhookRegistration, nil
}

// DeleteWebhook removes a registration of either kind.
func (s *Sim) DeleteWebhook(id int64) error {
	h := s.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, r := range h.regs {
		if r.ID == id {
			h.regs = slices.Delete(h.regs, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("delete webhook %d: %w", id, ErrNotFound)
}

// Deliveries returns the recorded delivery attempts, oldest first.
func (s *Sim) Deliveries() []Delivery {
	h := s.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.log)
}

// ResetDeliveries clears the delivery log.
func (s *Sim) ResetDeliveries() {
	h := s.hooks
	h.mu.Lock()
	h.log = nil
	h.mu.Unlock()
}

// SetWebhookFaults replaces the delivery knobs (duplicate, delay, lose next N).
func (s *Sim) SetWebhookFaults(f WebhookFaults) {
	h := s.hooks
	h.mu.Lock()
	h.knobs = f
	h.mu.Unlock()
}

// LoseNextDeliveries drops the next n deliveries without sending them.
func (s *Sim) LoseNextDeliveries(n int) {
	h := s.hooks
	h.mu.Lock()
	h.knobs.LoseNext = n
	h.mu.Unlock()
}

// FlushWebhooks waits until no delivery is queued or in flight (retries included), or ctx ends.
func (s *Sim) FlushWebhooks(ctx context.Context) error {
	h := s.hooks
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		h.mu.Lock()
		idle := len(h.queue) == 0 && h.inflight == 0
		h.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("flush webhooks: %w", ctx.Err())
		case <-t.C:
		}
	}
}
