// Command ebbnats runs a real nats-server (the nats-server/v2 module, the
// same server the nats-server binary runs) with JetStream, for the bench's
// async scenario: the harness starts it as a process, pinned to the server
// CPUs like every server it measures, and stops it by its PID.
//
//	ebbnats -addr 127.0.0.1:4222 -monitor 127.0.0.1:8222 -store /tmp/js
//
// With -monitor it serves nats-server's monitoring endpoints there, whose
// /healthz answers 200 once JetStream is ready.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ebbnats:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:4222", "client address (host:port)")
	monitor := flag.String("monitor", "", "monitoring address (host:port) with /healthz; empty: none")
	store := flag.String("store", "", "JetStream's storage directory (required)")
	flag.Parse()
	if *store == "" {
		return fmt.Errorf("give -store DIR")
	}
	o := &server.Options{JetStream: true, StoreDir: *store, NoSigs: true}
	var err error
	if o.Host, o.Port, err = hostPort(*addr); err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	if *monitor != "" {
		if o.HTTPHost, o.HTTPPort, err = hostPort(*monitor); err != nil {
			return fmt.Errorf("-monitor: %w", err)
		}
	}
	s, err := server.NewServer(o)
	if err != nil {
		return err
	}
	s.ConfigureLogger()
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("not ready for connections within 30s")
	}
	fmt.Println("ready", s.ClientURL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

// hostPort splits "host:port".
func hostPort(addr string) (string, int, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return "", 0, fmt.Errorf("port of %q: %w", addr, err)
	}
	return host, port, nil
}
