package realise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HTTPOptions tune the HTTP client of http:// and https:// caches. Zero
// values mean the defaults named on each field.
type HTTPOptions struct {
	// ConnectTimeout bounds connecting and the TLS handshake (5 s).
	ConnectTimeout time.Duration
	// QueryTimeout bounds one request for a narinfo or nix-cache-info,
	// from connecting to the last byte (5 s). A query that times out is
	// not retried: the cache is down (see Cache).
	QueryTimeout time.Duration
	// StallTimeout is how long a response may send nothing, before its
	// headers or within its body, before the attempt is given up (30 s).
	StallTimeout time.Duration
	// MaxRetries is how many times a request is tried again after a 5xx
	// answer, a 429, a broken connection or a stall (4, so 5 attempts as
	// Nix's download-attempts); negative: never.
	MaxRetries int
	// RetryBackoff is the wait before the first retry, doubled for each
	// further one, with up to as much again of random jitter (250 ms).
	RetryBackoff time.Duration
}

// Defaults of HTTPOptions: short, since a lookup through the mount waits
// for its queries (a NAR download has StallTimeout between bytes instead).
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultQueryTimeout   = 5 * time.Second
)

func (o *HTTPOptions) defaults() {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = DefaultQueryTimeout
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = 30 * time.Second
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 4
	} else if o.MaxRetries < 0 {
		o.MaxRetries = 0
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 250 * time.Millisecond
	}
}

// httpCache reads a cache over HTTP: keep-alive connections (one client per
// cache), bounded retries with backoff, and bodies that resume with a Range
// request where a connection broke or stalled.
type httpCache struct {
	root   string // no trailing slash
	opts   HTTPOptions
	client *http.Client
}

func newHTTPCache(root string, opts HTTPOptions) (*httpCache, error) {
	u, err := url.Parse(root)
	if err != nil {
		return nil, fmt.Errorf("binary cache %q: %w", root, err)
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("binary cache %q: want http(s)://host[:port][/path], without user, query or fragment", root)
	}
	opts.defaults()
	dialer := &net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   opts.ConnectTimeout,
		ResponseHeaderTimeout: opts.StallTimeout,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
		// A resumed body is asked for by byte offset, which must be the
		// offset in the file, not in a gzip encoding of it.
		DisableCompression: true,
	}
	return &httpCache{root: root, opts: opts, client: &http.Client{Transport: tr}}, nil
}

func (h *httpCache) remote() bool { return true }

// HTTPStatusError is an answer a cache should not give: a 4xx other than
// 404, or a 5xx that persisted through the retries.
type HTTPStatusError struct {
	URL    string
	Status string // e.g. "403 Forbidden"
	Code   int
}

func (e *HTTPStatusError) Error() string {
	return fmt.Sprintf("GET %s: HTTP %s", e.URL, e.Status)
}

// errStalled is the cause of an attempt cancelled for sending nothing.
var errStalled = errors.New("stalled")

// transient says whether an attempt that failed with err may be retried.
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var se *HTTPStatusError
	if errors.As(err, &se) {
		return se.Code >= 500 || se.Code == http.StatusTooManyRequests
	}
	return !errors.Is(err, errNotInCache)
}

func (h *httpCache) backoff(ctx context.Context, attempt int) error {
	d := h.opts.RetryBackoff << min(attempt, 10)
	d += rand.N(d + 1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errQueryTimeout is the cause of a query cancelled for taking longer than
// QueryTimeout.
var errQueryTimeout = errors.New("query timed out")

// readSmall reads a narinfo or nix-cache-info: each attempt within
// QueryTimeout, retried (with backoff) only after a 5xx or 429 answer. A
// cache that does not answer in time, or cannot be connected to, is not
// asked again here: the caller takes it as down.
func (h *httpCache) readSmall(ctx context.Context, name string, max int) ([]byte, error) {
	url := h.root + "/" + name
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeoutCause(ctx, h.opts.QueryTimeout, errQueryTimeout)
		data, err := h.getSmall(actx, url, max)
		timedOut := errors.Is(context.Cause(actx), errQueryTimeout)
		cancel()
		switch {
		case err == nil:
			return data, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case timedOut:
			return nil, fmt.Errorf("GET %s: no answer within %v: %w", url, h.opts.QueryTimeout, errStalled)
		}
		var se *HTTPStatusError
		if !errors.As(err, &se) || !transient(ctx, err) || attempt >= h.opts.MaxRetries {
			if attempt > 0 {
				err = fmt.Errorf("%w (after %d retries)", err, attempt)
			}
			return nil, err
		}
		if err := h.backoff(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

// getSmall makes one request for a small file.
func (h *httpCache) getSmall(ctx context.Context, url string, max int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("GET %s: %w (HTTP 404)", url, errNotInCache)
	case resp.StatusCode != http.StatusOK:
		return nil, &HTTPStatusError{URL: url, Status: resp.Status, Code: resp.StatusCode}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if len(data) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", url, max)
	}
	return data, nil
}

func (h *httpCache) open(ctx context.Context, name string) (io.ReadCloser, error) {
	b := &httpBody{h: h, ctx: ctx, url: h.root + "/" + name}
	if err := b.connect(); err != nil {
		return nil, err
	}
	return b, nil
}

// httpBody is the body of one file. When the connection breaks or stalls
// it asks again from where it was (Range: bytes=off-), within the retry
// budget; the caller sees one unbroken stream.
type httpBody struct {
	h       *httpCache
	ctx     context.Context
	url     string
	off     int64 // bytes delivered so far
	retries int   // used so far

	body    io.ReadCloser // the current attempt's; nil between attempts
	attempt context.Context
	cancel  context.CancelCauseFunc
	timer   *time.Timer // cancels the attempt with errStalled
}

// connect makes one request at b.off, retrying transient failures.
func (b *httpBody) connect() error {
	for {
		err := b.request()
		if err == nil {
			return nil
		}
		if !transient(b.ctx, err) || b.retries >= b.h.opts.MaxRetries {
			if b.retries > 0 {
				return fmt.Errorf("%w (after %d retries)", err, b.retries)
			}
			return err
		}
		if err := b.h.backoff(b.ctx, b.retries); err != nil {
			return err
		}
		b.retries++
	}
}

func (b *httpBody) request() error {
	ctx, cancel := context.WithCancelCause(b.ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url, nil)
	if err != nil {
		cancel(nil)
		return fmt.Errorf("GET %s: %w", b.url, err)
	}
	if b.off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(b.off, 10)+"-")
	}
	resp, err := b.h.client.Do(req)
	if err != nil {
		cancel(nil)
		return fmt.Errorf("GET %s: %w", b.url, err)
	}
	fail := func(err error) error {
		resp.Body.Close()
		cancel(nil)
		return err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fail(fmt.Errorf("GET %s: %w (HTTP 404)", b.url, errNotInCache))
	case b.off > 0 && resp.StatusCode == http.StatusPartialContent:
		if !strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes "+strconv.FormatInt(b.off, 10)+"-") {
			return fail(fmt.Errorf("GET %s from byte %d: the server answered Content-Range %q", b.url, b.off, resp.Header.Get("Content-Range")))
		}
	case resp.StatusCode == http.StatusOK:
		if b.off > 0 { // no ranges: skip what was delivered already
			if _, err := io.CopyN(io.Discard, resp.Body, b.off); err != nil {
				return fail(fmt.Errorf("GET %s: skipping to byte %d: %w", b.url, b.off, err))
			}
		}
	default:
		return fail(&HTTPStatusError{URL: b.url, Status: resp.Status, Code: resp.StatusCode})
	}
	b.body, b.attempt, b.cancel = resp.Body, ctx, cancel
	b.timer = time.AfterFunc(time.Hour, func() { cancel(errStalled) })
	b.timer.Stop()
	return nil
}

func (b *httpBody) Read(p []byte) (int, error) {
	for {
		if b.body == nil {
			if err := b.connect(); err != nil {
				return 0, err
			}
		}
		b.timer.Reset(b.h.opts.StallTimeout)
		n, err := b.body.Read(p)
		b.timer.Stop()
		b.off += int64(n)
		if err == nil || err == io.EOF {
			return n, err
		}
		stalled := errors.Is(context.Cause(b.attempt), errStalled)
		b.drop()
		if stalled {
			err = fmt.Errorf("no data for %v: %w", b.h.opts.StallTimeout, errStalled)
		}
		err = fmt.Errorf("GET %s at byte %d: %w", b.url, b.off, err)
		if !transient(b.ctx, err) || b.retries >= b.h.opts.MaxRetries {
			if b.retries > 0 {
				err = fmt.Errorf("%w (after %d retries)", err, b.retries)
			}
			return n, err
		}
		if n > 0 {
			return n, nil // reconnect on the next call
		}
		if err := b.h.backoff(b.ctx, b.retries); err != nil {
			return 0, err
		}
		b.retries++
	}
}

// drop closes the current attempt.
func (b *httpBody) drop() {
	if b.body != nil {
		b.body.Close()
		b.body = nil
	}
	if b.cancel != nil {
		b.cancel(nil)
		b.cancel = nil
	}
}

func (b *httpBody) Close() error {
	b.drop()
	return nil
}
