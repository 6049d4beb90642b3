package main

import (
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

const etcdStartTimeout = time.Minute

// startEtcd runs a one-member etcd in this process, on 127.0.0.1, with its
// data in the state directory.
//
// fsync is off: this etcd serves tests and local trials on one machine. Data
// written before the process stops, even by SIGKILL, is in the page cache and
// a restart reads it; only a crash of the machine itself can lose it.
func startEtcd(s *state) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "tollgate-local"
	cfg.Dir = s.etcdDir()
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", s.ports.Etcd)}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", s.ports.EtcdPeer)}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// etcd's own log goes to a file: on a normal stop it logs its closed
	// listeners as errors, which would only confuse a reader of stderr.
	cfg.Logger = "zap"
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{s.path("etcd.log")}
	cfg.UnsafeNoFsync = true

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting etcd in %s: %w", cfg.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd in %s: %w", cfg.Dir, err)
	case <-time.After(etcdStartTimeout):
		e.Close()
		return nil, fmt.Errorf("etcd in %s was not ready after %s", cfg.Dir, etcdStartTimeout)
	}
}

func (s *state) etcdURL() string { return fmt.Sprintf("http://127.0.0.1:%d", s.ports.Etcd) }
