package servicehost

import (
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		// want is the error; empty: valid.
		want string
	}{
		{"off", Options{RemediationRate: 10}, ""},
		{"host and port", Options{ServiceHost: "10.0.0.1", ServicePort: "6443", RemediationRate: 10}, ""},
		{"a DNS name", Options{ServiceHost: "api.example.com", RemediationRate: 10}, ""},
		{"bracketed IPv6", Options{ServiceHost: "[fd00::1]", RemediationRate: 10}, `--service-host="[fd00::1]": give an IPv6 address without brackets (client-go adds them)`},
		{"not a host", Options{ServiceHost: "not a host", RemediationRate: 10}, `--service-host="not a host" is neither an IP address nor a DNS name`},
		{"port without host", Options{ServicePort: "6443", RemediationRate: 10}, `--service-port="6443" needs --service-host: the port is only injected with a host`},
		{"no rate", Options{RemediationRate: 0}, "--remediation-rate=0 must be at least 1 eviction per minute"},
		{"IPv6", Options{ServiceHost: "fd00::1", RemediationRate: 10}, ""},
		{"IPv4-mapped IPv6", Options{ServiceHost: "::ffff:10.0.0.1", RemediationRate: 10}, `--service-host="::ffff:10.0.0.1" is an IPv4-mapped IPv6 address: give the IPv4 address 10.0.0.1`},
		{"IPv6 with a zone", Options{ServiceHost: "fe80::1%eth0", RemediationRate: 10}, `--service-host="fe80::1%eth0" has a zone, which no Pod can use`},
		{"quoted host", Options{ServiceHost: `"10.0.0.1"`, RemediationRate: 10}, `--service-host="\"10.0.0.1\"" is neither an IP address nor a DNS name`},
		{"an IPv4 address with a part missing", Options{ServiceHost: "10.0.0", RemediationRate: 10}, `--service-host="10.0.0" is not an IP address (a part is missing, out of range or has a leading zero)`},
		{"an IPv4 address with a leading zero", Options{ServiceHost: "010.0.0.1", RemediationRate: 10}, `--service-host="010.0.0.1" is not an IP address (a part is missing, out of range or has a leading zero)`},
		{"the unspecified address", Options{ServiceHost: "0.0.0.0", RemediationRate: 10}, `--service-host="0.0.0.0" is the unspecified address, which no Pod can dial`},
		{"the unspecified IPv6 address", Options{ServiceHost: "::", RemediationRate: 10}, `--service-host="::" is the unspecified address, which no Pod can dial`},
		{"a quote in the host", Options{ServiceHost: "a'b", RemediationRate: 10}, `--service-host="a'b" is neither an IP address nor a DNS name`},
		{"port with a sign", Options{ServiceHost: "10.0.0.1", ServicePort: "+6443", RemediationRate: 10}, `--service-port="+6443" is not a port from 1 to 65535`},
		{"quoted port", Options{ServiceHost: "10.0.0.1", ServicePort: `"6443"`, RemediationRate: 10}, `--service-port="\"6443\"" is not a port from 1 to 65535`},
		{"port 0", Options{ServiceHost: "10.0.0.1", ServicePort: "0", RemediationRate: 10}, `--service-port="0" is not a port from 1 to 65535`},
		{"a twin", Options{ServiceHost: "10.0.0.1", InjectionPolicy: "svcguard-service-host", RemediationRate: 10}, ""},
		{"a twin by an invalid name", Options{ServiceHost: "10.0.0.1", InjectionPolicy: "Svcguard_Twin", RemediationRate: 10},
			`--injection-policy="Svcguard_Twin" is not a valid object name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("expected valid, got %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Errorf("expected error %q, got %v", tc.want, err)
			}
		})
	}
}
