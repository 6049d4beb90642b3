// Command tollgate-apiserver runs a real kube-apiserver and an embedded etcd
// in one process, both on 127.0.0.1, for Tollgate's tests and for trying
// Tollgate locally. No controller-manager, scheduler or kubelet run: see
// README.md for what that leaves out.
//
//	tollgate-apiserver --dir DIR [--port N] [-- extra kube-apiserver flags]
//	tollgate-apiserver kubelet --dir DIR --node NAME --allow CMD=PATH...
//
// The second form is a fake kubelet for exec (kubelet.go): it serves the
// kubelet's exec endpoint for the pods of one Node of the server in DIR and
// runs the allowed commands on this machine.
//
// DIR holds the etcd data, the keys, the admin token and DIR/kubeconfig; the
// ports chosen on the first start are recorded there and reused, so a second
// start with the same DIR serves the same data at the same URL. When the API
// server answers /readyz, one line goes to stdout:
//
//	tollgate-apiserver: ready https://127.0.0.1:PORT kubeconfig=DIR/kubeconfig
//
// SIGTERM or SIGINT stops the API server, then etcd, and exits 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	_ "time/tzdata" // as cmd/kube-apiserver: time zones for CronJob

	_ "k8s.io/component-base/logs/json/register"          // as cmd/kube-apiserver: JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // as cmd/kube-apiserver: client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // as cmd/kube-apiserver: version metric
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

const readyTimeout = 3 * time.Minute

func main() {
	if len(os.Args) > 1 && os.Args[1] == "kubelet" {
		if err := runKubelet(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "tollgate-apiserver kubelet: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "tollgate-apiserver: %v\n", err)
		os.Exit(1)
	}
}

func run(argv []string) error {
	fs := flag.NewFlagSet("tollgate-apiserver", flag.ContinueOnError)
	dir := fs.String("dir", "", "state directory (etcd data, keys, token, kubeconfig); created if missing")
	port := fs.Int("port", 0, "API server port on 127.0.0.1 (0: the one recorded in --dir, else a free one)")
	etcdPort := fs.Int("etcd-port", 0, "etcd client port on 127.0.0.1 (0: recorded, else free)")
	etcdPeerPort := fs.Int("etcd-peer-port", 0, "etcd peer port on 127.0.0.1 (0: recorded, else free)")
	serviceRange := fs.String("service-cluster-ip-range", "10.96.0.0/16,fd00:10:96::/112",
		"ClusterIP ranges, comma separated, at most one per family (dual-stack by default)")
	if err := fs.Parse(argv); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("--dir is required")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return fmt.Errorf("--dir %q: %w", *dir, err)
	}

	st, err := loadOrCreateState(abs, ports{APIServer: *port, Etcd: *etcdPort, EtcdPeer: *etcdPeerPort})
	if err != nil {
		return err
	}

	etcd, err := startEtcd(st)
	if err != nil {
		return err
	}
	defer etcd.Close()

	cmd := app.NewAPIServerCommand() // installs the SIGTERM/SIGINT handler
	cmd.SetArgs(append(apiServerFlags(st, *serviceRange), fs.Args()...))
	served := make(chan error, 1)
	go func() { served <- cmd.Execute() }()

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := waitReady(ctx, st, served, etcd.Err()); err != nil {
		return err
	}
	fmt.Printf("tollgate-apiserver: ready %s kubeconfig=%s\n", st.url(), st.kubeconfigPath())

	select {
	case err := <-served:
		if err != nil {
			return fmt.Errorf("kube-apiserver: %w", err)
		}
		fmt.Fprintln(os.Stderr, "tollgate-apiserver: stopped")
		return nil
	case err := <-etcd.Err():
		return fmt.Errorf("etcd: %w", err)
	}
}
