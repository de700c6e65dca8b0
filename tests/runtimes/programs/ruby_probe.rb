# A plain Ruby program: Net::HTTP (which reads http_proxy from the environment) or a raw TCPSocket
# (getaddrinfo + connect from libc). Prints the response body on stdout; a failure goes to stderr
# with exit code 1.
#
#     ruby ruby_probe.rb net-http|tcpsocket http://host:port/path
require 'net/http'
require 'socket'
require 'uri'

mode, url = ARGV
uri = URI(url)
begin
  body =
    case mode
    when 'net-http'
      http = Net::HTTP.new(uri.host, uri.port)
      http.open_timeout = http.read_timeout = 10
      warn "ruby: net/http proxy #{http.proxy? ? "#{http.proxy_address}:#{http.proxy_port}" : 'none'}"
      response = http.get(uri.path)
      raise "status #{response.code}" unless response.code == '200'
      response.body
    when 'tcpsocket'
      socket = TCPSocket.new(uri.host, uri.port, connect_timeout: 10)
      warn "ruby: connected to #{socket.remote_address.ip_address}"
      socket.write("GET #{uri.path} HTTP/1.0\r\nHost: #{uri.host}:#{uri.port}\r\n\r\n")
      head, body = socket.read.split("\r\n\r\n", 2)
      raise "answer: #{head.lines.first}" unless head.lines.first.include?(' 200 ')
      body
    else
      raise ArgumentError, "unknown mode #{mode}"
    end
  $stdout.write(body)
rescue StandardError => e
  warn "ruby probe failed: #{e.class}: #{e.message}"
  exit 1
end
