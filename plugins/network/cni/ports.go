package cni

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/core/network"
)

// reservation holds a published host port: a socket bound to it (never
// listening, so it receives nothing; the DNAT rules take the traffic).
// Holding it makes the kernel refuse the port to any other program, and
// makes a port some program already uses fail at once with a clear error
// instead of being shadowed silently by the DNAT rule.
type reservation struct {
	fd int // -1 when the protocol cannot be reserved (SCTP unsupported)
}

func (r *reservation) release() {
	if r != nil && r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}

// reservePort binds p's host port (0: a free one, chosen by the kernel)
// and returns the reservation and the port it got.
func reservePort(p network.PortMapping, port uint16) (*reservation, uint16, error) {
	family, sa := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Port: int(port)})
	if p.HostIP.IsValid() {
		if p.HostIP.Is4() {
			sa = &unix.SockaddrInet4{Port: int(port), Addr: p.HostIP.As4()}
		} else {
			family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(port), Addr: p.HostIP.As16()}
		}
	}
	typ, proto := unix.SOCK_STREAM, 0
	switch p.Protocol {
	case "udp":
		typ = unix.SOCK_DGRAM
	case "sctp":
		typ, proto = unix.SOCK_SEQPACKET, unix.IPPROTO_SCTP
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		if p.Protocol == "sctp" && port != 0 && (errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT)) {
			return &reservation{fd: -1}, port, nil
		}
		return nil, 0, fmt.Errorf("reserve host port %d/%s: %w", port, p.Protocol, err)
	}
	if family == unix.AF_INET6 {
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	// No SO_REUSEADDR: with it, another program's bind could share the
	// port with this idle socket.
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, 0, err
	}
	if port == 0 {
		got, err := unix.Getsockname(fd)
		if err != nil {
			unix.Close(fd)
			return nil, 0, fmt.Errorf("read reserved port: %w", err)
		}
		switch a := got.(type) {
		case *unix.SockaddrInet4:
			port = uint16(a.Port)
		case *unix.SockaddrInet6:
			port = uint16(a.Port)
		}
	}
	return &reservation{fd: fd}, port, nil
}

// holder names who publishes a host port.
type holder struct {
	att  *attachmentRecord
	port network.PortMapping
}

// allocatePorts resolves and reserves the host ports of ms. taken are the
// ports other attachments publish; a clash with one names its container,
// a port some other program holds says so. On error nothing stays
// reserved.
func allocatePorts(ms []network.PortMapping, taken []holder) ([]network.PortMapping, []*reservation, error) {
	out := make([]network.PortMapping, 0, len(ms))
	var held []*reservation
	fail := func(err error) ([]network.PortMapping, []*reservation, error) {
		for _, r := range held {
			r.release()
		}
		return nil, nil, err
	}
	for _, m := range ms {
		got, r, err := allocateOne(m, taken)
		if err != nil {
			return fail(err)
		}
		held = append(held, r)
		out = append(out, got)
	}
	return out, held, nil
}

func allocateOne(m network.PortMapping, taken []holder) (network.PortMapping, *reservation, error) {
	candidates := m.Candidates()
	if len(candidates) == 0 {
		r, port, err := reservePort(m, 0)
		if err != nil {
			return m, nil, fmt.Errorf("choose a free host port for %s: %w", m, err)
		}
		m.HostPort, m.HostPortEnd = port, 0
		return m, r, nil
	}
	var lastErr error
	for _, port := range candidates {
		try := m
		try.HostPort, try.HostPortEnd = port, 0
		if h := publisher(try, taken); h != nil {
			lastErr = fmt.Errorf("host port %s is already published by container %s/%s on network %s (%s): %w",
				hostPort(try), h.att.Namespace, h.att.ContainerID, h.att.Network, h.port, errdefs.ErrAlreadyExists)
			continue
		}
		r, _, err := reservePort(try, port)
		if err != nil {
			if errors.Is(err, unix.EADDRINUSE) {
				err = fmt.Errorf("host port %s is already in use by another program on the host: %w", hostPort(try), errdefs.ErrAlreadyExists)
			} else if errors.Is(err, unix.EADDRNOTAVAIL) {
				err = fmt.Errorf("host address %s of %s is not an address of this host: %w", try.HostIP, try, errdefs.ErrInvalidArgument)
			}
			lastErr = err
			continue
		}
		return try, r, nil
	}
	if len(candidates) > 1 {
		return m, nil, fmt.Errorf("no free host port in %d-%d for %s: %w", m.HostPort, m.HostPortEnd, m, lastErr)
	}
	return m, nil, lastErr
}

func publisher(p network.PortMapping, taken []holder) *holder {
	for i := range taken {
		if taken[i].port.Overlaps(p) {
			return &taken[i]
		}
	}
	return nil
}

func hostPort(p network.PortMapping) string {
	ip := "0.0.0.0"
	if p.HostIP.IsValid() {
		ip = p.HostIP.String()
	}
	return joinHostPort(ip, p.HostPort) + "/" + p.Protocol
}

func joinHostPort(ip string, port uint16) string {
	if a, err := netip.ParseAddr(ip); err == nil {
		return netip.AddrPortFrom(a, port).String()
	}
	return fmt.Sprintf("%s:%d", ip, port)
}
