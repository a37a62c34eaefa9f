package testenv

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFreeAddressNeverRepeatsAndStaysBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	seen := map[string]bool{}
	for range 300 {
		addr, err := FreeAddress()
		require.NoError(t, err)
		_, portText, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		port, err := strconv.Atoi(portText)
		require.NoError(t, err)
		assert.Less(t, port, low, "%s is in the ephemeral range, where outgoing connections take ports", addr)
		assert.False(t, seen[addr], "%s handed out twice", addr)
		seen[addr] = true
	}
}
