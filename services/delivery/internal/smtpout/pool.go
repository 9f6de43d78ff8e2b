package smtpout

import (
	"context"
	"slices"
	"sync"
	"time"
)

// poolKey identifies sessions that can carry each other's messages: same
// host name (certificate identity), address, TLS mode and purpose.
type poolKey struct {
	host      string
	addr      string
	mode      TLSMode
	smarthost bool
	// auth is the smarthost identity the session logged in with: a
	// session authenticated as one user never carries another's mail.
	auth string
}

// pool keeps idle sessions for reuse. Lock order: pool.mu only; sessions
// are never touched under it except to stop their timer.
type pool struct {
	mu      sync.Mutex
	idle    map[poolKey][]*session
	max     int
	timeout time.Duration
	closed  bool
}

func newPool(max int, timeout time.Duration) *pool {
	return &pool{idle: map[poolKey][]*session{}, max: max, timeout: timeout}
}

// get takes an idle session for key, most recently used first.
func (p *pool) get(key poolKey) (*session, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[key]
	if len(list) == 0 {
		return nil, false
	}
	s := list[len(list)-1]
	p.idle[key] = list[:len(list)-1]
	if len(p.idle[key]) == 0 {
		delete(p.idle, key)
	}
	s.timer.Stop()
	return s, true
}

// put parks s for reuse, or ends it if the pool is full or closed.
func (p *pool) put(key poolKey, s *session) {
	p.mu.Lock()
	if p.closed || p.max < 0 || len(p.idle[key]) >= p.max {
		p.mu.Unlock()
		s.quit()
		return
	}
	s.timer = time.AfterFunc(p.timeout, func() { p.expire(key, s) })
	p.idle[key] = append(p.idle[key], s)
	p.mu.Unlock()
}

// expire ends s if it is still idle; a get that won the race keeps it.
func (p *pool) expire(key poolKey, s *session) {
	p.mu.Lock()
	list := p.idle[key]
	i := slices.Index(list, s)
	if i >= 0 {
		p.idle[key] = slices.Delete(list, i, i+1)
		if len(p.idle[key]) == 0 {
			delete(p.idle, key)
		}
	}
	p.mu.Unlock()
	if i >= 0 {
		s.quit()
	}
}

// idleCount is the number of idle sessions, for tests and metrics.
func (p *pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.idle {
		n += len(l)
	}
	return n
}

func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	var all []*session
	for _, l := range p.idle {
		all = append(all, l...)
	}
	p.idle = map[poolKey][]*session{}
	p.mu.Unlock()
	for _, s := range all {
		s.timer.Stop()
		s.quit()
	}
}

// limiter bounds concurrent sessions per destination. Entries exist only
// while someone holds or waits for a slot, so the map does not grow with
// every domain ever seen.
type limiter struct {
	mu   sync.Mutex
	max  int
	dest map[string]*destSlots
}

type destSlots struct {
	sem   chan struct{}
	users int
}

func newLimiter(max int) *limiter {
	return &limiter{max: max, dest: map[string]*destSlots{}}
}

func (l *limiter) acquire(ctx context.Context, key string) (release func(), err error) {
	l.mu.Lock()
	d := l.dest[key]
	if d == nil {
		d = &destSlots{sem: make(chan struct{}, l.max)}
		l.dest[key] = d
	}
	d.users++
	l.mu.Unlock()
	done := func() {
		l.mu.Lock()
		d.users--
		if d.users == 0 {
			delete(l.dest, key)
		}
		l.mu.Unlock()
	}
	select {
	case d.sem <- struct{}{}:
		return func() { <-d.sem; done() }, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}

// IdleSessions reports how many sessions are pooled (for metrics).
func (t *Transport) IdleSessions() int { return t.pool.idleCount() }
