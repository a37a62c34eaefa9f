package options

import (
	"fmt"
	"net"
	"strconv"
)

// validateHostPort checks that value is host:port with a port from 0 to 65535
// (0: any free port); "0" alone is accepted where allowOff says the listener
// can be turned off.
func validateHostPort(flagName, value string, allowOff bool) error {
	if allowOff && value == "0" {
		return nil
	}
	_, port, err := net.SplitHostPort(value)
	if err != nil {
		return fmt.Errorf("--%s=%q is not host:port (for example \":9443\" or \"127.0.0.1:9443\")", flagName, value)
	}
	if _, err := ParsePort(port); err != nil {
		return fmt.Errorf("--%s=%q: %w", flagName, value, err)
	}
	return nil
}

// ParsePort parses a TCP port number from 0 to 65535.
func ParsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 0 to 65535", s)
	}
	return n, nil
}
