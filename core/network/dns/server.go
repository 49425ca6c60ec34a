package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Config describes one network's server.
type Config struct {
	// Network is the name the server answers for (Table entries'
	// Network).
	Network string
	// Addr and Port are where it listens: the network's gateway, port
	// 53. The address need not exist yet (the bridge gets it when the
	// first container joins), so sockets are bound with IP_FREEBIND.
	Addr netip.Addr
	Port uint16
	// Clients are the prefixes queries are accepted from; others are
	// refused, so the server is no open resolver for other hosts.
	Clients []netip.Prefix
	Table   *Table
	// Forward returns the default upstream servers; nil or NoForward
	// means unknown names fail with SERVFAIL.
	Forward   func() []netip.AddrPort
	NoForward bool
	// Timeout bounds each upstream exchange (default 2s).
	Timeout time.Duration
}

// Limits on the work one server takes on at once: queries beyond them are
// dropped (UDP) or refused a connection (TCP), and clients retry.
const (
	maxInFlight   = 256
	maxTCPConns   = 64
	tcpIdle       = 10 * time.Second
	answerTTL     = 600
	defaultUDPMax = 512
)

// Server is a running resolver.
type Server struct {
	cfg      Config
	udp      *net.UDPConn
	tcp      *net.TCPListener
	inflight chan struct{}
	tcpConns chan struct{}
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
}

// Listen opens the server's UDP and TCP sockets and starts serving.
func Listen(cfg Config) (*Server, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Table == nil {
		return nil, errors.New("dns: no table")
	}
	lc := net.ListenConfig{Control: freebind}
	addr := netip.AddrPortFrom(cfg.Addr, cfg.Port).String()
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return nil, fmt.Errorf("dns for network %s: listen on udp %s: %w", cfg.Network, addr, err)
	}
	// Port 0 (tests) gets one port for both protocols.
	addr = pc.LocalAddr().String()
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("dns for network %s: listen on tcp %s: %w", cfg.Network, addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, udp: pc.(*net.UDPConn), tcp: l.(*net.TCPListener),
		inflight: make(chan struct{}, maxInFlight),
		tcpConns: make(chan struct{}, maxTCPConns),
		ctx:      ctx, cancel: cancel,
	}
	s.wg.Add(2)
	go s.serveUDP()
	go s.serveTCP()
	return s, nil
}

func freebind(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// Addr is the address the server listens on.
func (s *Server) Addr() netip.AddrPort {
	return s.udp.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Close stops the server and waits for its queries to finish.
func (s *Server) Close() error {
	s.cancel()
	err := errors.Join(s.udp.Close(), s.tcp.Close())
	s.wg.Wait()
	return err
}

func (s *Server) allowed(src netip.Addr) bool {
	if len(s.cfg.Clients) == 0 {
		return true
	}
	for _, p := range s.cfg.Clients {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

func (s *Server) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.ctx.Err() == nil {
				slog.Warn("dns: udp read", "network", s.cfg.Network, "error", err)
				continue
			}
			return
		}
		src := from.Addr().Unmap()
		if !s.allowed(src) {
			continue
		}
		select {
		case s.inflight <- struct{}{}:
		default:
			continue // overloaded: the client retries
		}
		msg := append([]byte(nil), buf[:n]...)
		s.wg.Add(1)
		go func() {
			defer func() { <-s.inflight; s.wg.Done() }()
			if resp := s.handle(msg, src, false); resp != nil {
				s.udp.WriteToUDPAddrPort(resp, from)
			}
		}()
	}
}

func (s *Server) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.AcceptTCP()
		if err != nil {
			if s.ctx.Err() == nil {
				slog.Warn("dns: tcp accept", "network", s.cfg.Network, "error", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		src := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		if !s.allowed(src) {
			c.Close()
			continue
		}
		select {
		case s.tcpConns <- struct{}{}:
		default:
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer func() { <-s.tcpConns; s.wg.Done() }()
			s.serveConn(c, src)
		}()
	}
}

// serveConn answers length-prefixed queries on one TCP connection until
// the client closes it, idles or the server stops.
func (s *Server) serveConn(c *net.TCPConn, src netip.Addr) {
	defer c.Close()
	stop := context.AfterFunc(s.ctx, func() { c.Close() })
	defer stop()
	for {
		c.SetDeadline(time.Now().Add(tcpIdle))
		msg, err := readTCPMessage(c)
		if err != nil {
			return
		}
		resp := s.handle(msg, src, true)
		if resp == nil {
			return
		}
		if err := writeTCPMessage(c, resp); err != nil {
			return
		}
	}
}

func readTCPMessage(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func writeTCPMessage(w io.Writer, msg []byte) error {
	if len(msg) > 65535 {
		return fmt.Errorf("dns message of %d bytes is too long for TCP", len(msg))
	}
	out := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(out, uint16(len(msg)))
	copy(out[2:], msg)
	_, err := w.Write(out)
	return err
}
