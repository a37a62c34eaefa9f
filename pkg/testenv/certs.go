package testenv

import (
	"math/big"
)

// ServedSerial returns the serial number of the certificate that addr serves.
// It returns an error rather than failing the test: tests poll it inside
// require.Eventually while a rotated certificate is being picked up.
func ServedSerial(addr string) (*big.Int, error) {
	conn, err := tlsDial(addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
}
