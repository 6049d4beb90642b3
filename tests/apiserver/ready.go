package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// waitReady polls /readyz as the admin until it answers 200, the API server
// or etcd stops, or ctx ends.
func waitReady(ctx context.Context, s *state, served <-chan error, etcdErr <-chan error) error {
	caPEM, err := os.ReadFile(s.caCertPath())
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%s: no certificate", s.caCertPath())
	}
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	last := "no answer yet"
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-served:
			if err == nil {
				return fmt.Errorf("kube-apiserver stopped before it was ready")
			}
			return fmt.Errorf("kube-apiserver: %w", err)
		case err := <-etcdErr:
			return fmt.Errorf("etcd: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("%s/readyz not ready in time; last answer: %s", s.url(), last)
		case <-tick.C:
		}
		ok, answer := probeReadyz(ctx, client, s)
		if ok {
			return nil
		}
		last = answer
	}
}

func probeReadyz(ctx context.Context, client *http.Client, s *state) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url()+"/readyz", nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode == http.StatusOK, fmt.Sprintf("%s %s", resp.Status, strings.TrimSpace(string(body)))
}
