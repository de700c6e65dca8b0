// Command netcheck serves HTTP (`netcheck serve :8080`: answers with its pod name) or fetches a URL
// (`netcheck get URL`: prints the body, exits 1 on failure), so node tests can check pod networking,
// Service VIPs, cluster DNS, exec and port-forward with one locally built image.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: netcheck serve ADDR | netcheck get URL")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		name, _ := os.Hostname()
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "netcheck %s %s\n", name, r.URL.Path)
		})
		go func() {
			signals := make(chan os.Signal, 1)
			signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
			<-signals
			os.Exit(0)
		}()
		if err := http.ListenAndServe(os.Args[2], nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "get":
		client := http.Client{Timeout: 5 * time.Second}
		res, err := client.Get(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		fmt.Print(string(body))
		if res.StatusCode != http.StatusOK {
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}
