// A plain Go program: net/http's default client, whose transport takes its proxy from
// http.ProxyFromEnvironment (HTTP_PROXY/HTTPS_PROXY/NO_PROXY, upper or lower case; ALL_PROXY is
// not read). Prints the response body on stdout; a failure goes to stderr with exit code 1.
//
//	go-probe [-bare-transport|-lookup] http://host:port/path
//
// -bare-transport uses &http.Transport{} (Proxy unset) instead of the default transport, as code
// that builds its own transport often does: such a client ignores the proxy variables.
// -lookup prints net.LookupHost(host) (with GODEBUG=netdns=cgo a cgo build asks libc's getaddrinfo).
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	bare := flag.Bool("bare-transport", false, "use &http.Transport{} (no Proxy func)")
	lookup := flag.Bool("lookup", false, "print net.LookupHost of the URL's host")
	flag.Parse()
	url := flag.Arg(0)
	request, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		fail(err)
	}
	if *lookup {
		addresses, err := net.LookupHost(request.URL.Hostname())
		if err != nil {
			fail(err)
		}
		fmt.Println(strings.Join(addresses, " "))
		return
	}
	proxy, err := http.ProxyFromEnvironment(request)
	if err != nil {
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "go-probe: proxy for %s is %v\n", url, proxy)
	client := &http.Client{Timeout: 10 * time.Second}
	if *bare {
		client.Transport = &http.Transport{}
		fmt.Fprintln(os.Stderr, "go-probe: bare transport, no Proxy func")
	}
	response, err := client.Do(request)
	if err != nil {
		fail(err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		fail(err)
	}
	if response.StatusCode != http.StatusOK {
		fail(fmt.Errorf("status %d: %s", response.StatusCode, body))
	}
	os.Stdout.Write(body)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "go-probe failed: %v\n", err)
	os.Exit(1)
}
