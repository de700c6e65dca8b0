import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

/**
 * A plain JVM program that calls a URL the way real Java code does, with nothing detour-specific in
 * it: the native layer (LD_PRELOAD from `detour exec` / `detour env`) or the JVM's own proxy
 * settings route it. Prints the response body on stdout; a failure goes to stderr with exit code 1.
 *
 *   java Probe socket|socket-unresolved|nio|urlconnection|httpclient|lookup http://host:port/path
 *
 * socket            new Socket(host, port): the JVM resolves the name itself first
 * socket-unresolved new Socket().connect(InetSocketAddress.createUnresolved(host, port))
 * nio               SocketChannel.open(new InetSocketAddress(host, port)), as Kafka clients connect
 * urlconnection     URL.openConnection() (HttpURLConnection)
 * httpclient        java.net.http.HttpClient.newHttpClient() (no explicit proxy)
 * lookup            InetAddress.getByName(host): the JVM's resolver (getaddrinfo), which no proxy setting covers
 */
public class Probe {
  private static final int TIMEOUT_MS = 10_000;

  public static void main(String[] args) throws Exception {
    String mode = args[0];
    URI uri = URI.create(args[args.length - 1]);
    try {
      String body =
          switch (mode) {
            case "socket" -> socket(new Socket(uri.getHost(), port(uri)), uri);
            case "socket-unresolved" -> {
              Socket socket = new Socket();
              socket.connect(InetSocketAddress.createUnresolved(uri.getHost(), port(uri)), TIMEOUT_MS);
              yield socket(socket, uri);
            }
            case "nio" -> nio(uri);
            case "urlconnection" -> urlConnection(uri);
            case "httpclient" -> httpClient(uri);
            case "lookup" -> InetAddress.getByName(uri.getHost()).getHostAddress() + "\n";
            default -> throw new IllegalArgumentException("unknown mode " + mode);
          };
      System.out.print(body);
      System.out.flush();
    } catch (Exception e) {
      System.err.println("probe " + mode + " failed: " + e);
      System.exit(1);
    }
  }

  private static int port(URI uri) {
    return uri.getPort() == -1 ? 80 : uri.getPort();
  }

  /** HTTP/1.1 by hand over a connected socket; returns the body of a 200 answer. */
  private static String socket(Socket socket, URI uri) throws Exception {
    try (socket) {
      socket.setSoTimeout(TIMEOUT_MS);
      OutputStream out = socket.getOutputStream();
      out.write(request(uri));
      out.flush();
      return body(readAll(socket.getInputStream()));
    }
  }

  /** The same over a blocking NIO SocketChannel, connected to a resolved InetSocketAddress. */
  private static String nio(URI uri) throws Exception {
    try (SocketChannel channel = SocketChannel.open(new InetSocketAddress(uri.getHost(), port(uri)))) {
      System.err.println("nio: connected to " + channel.getRemoteAddress());
      channel.write(ByteBuffer.wrap(request(uri)));
      return body(readAll(Channels.newInputStream(channel)));
    }
  }

  private static byte[] request(URI uri) {
    String request =
        "GET " + uri.getRawPath() + " HTTP/1.1\r\nHost: " + uri.getHost() + ":" + port(uri)
            + "\r\nConnection: close\r\n\r\n";
    return request.getBytes(StandardCharsets.US_ASCII);
  }

  private static String body(byte[] raw) {
    String response = new String(raw, StandardCharsets.UTF_8);
    int split = response.indexOf("\r\n\r\n");
    String status = response.substring(0, Math.max(0, response.indexOf("\r\n")));
    if (split < 0 || !status.contains(" 200 ")) throw new IllegalStateException("answer: " + status);
    String body = response.substring(split + 4);
    boolean chunked = response.substring(0, split).toLowerCase().contains("transfer-encoding: chunked");
    return chunked ? unchunk(body) : body;
  }

  /** The payload of a chunked body (what a server behind a proxy, e.g. Envoy, sends to HTTP/1.1). */
  private static String unchunk(String body) {
    StringBuilder out = new StringBuilder();
    int at = 0;
    while (true) {
      int lineEnd = body.indexOf("\r\n", at);
      int size = Integer.parseInt(body.substring(at, lineEnd).split(";")[0].trim(), 16);
      if (size == 0) return out.toString();
      out.append(body, lineEnd + 2, lineEnd + 2 + size);
      at = lineEnd + 2 + size + 2;
    }
  }

  private static String urlConnection(URI uri) throws Exception {
    HttpURLConnection connection = (HttpURLConnection) uri.toURL().openConnection();
    connection.setConnectTimeout(TIMEOUT_MS);
    connection.setReadTimeout(TIMEOUT_MS);
    int status = connection.getResponseCode();
    System.err.println("urlconnection: status " + status + ", usingProxy " + connection.usingProxy());
    if (status != 200) throw new IllegalStateException("status " + status);
    try (InputStream in = connection.getInputStream()) {
      return new String(readAll(in), StandardCharsets.UTF_8);
    }
  }

  private static String httpClient(URI uri) throws Exception {
    HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofMillis(TIMEOUT_MS)).build();
    // Empty: the client was given no proxy selector and uses ProxySelector.getDefault().
    System.err.println("httpclient: explicit proxy selector " + client.proxy());
    HttpRequest request = HttpRequest.newBuilder(uri).timeout(Duration.ofMillis(TIMEOUT_MS)).build();
    HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());
    if (response.statusCode() != 200) throw new IllegalStateException("status " + response.statusCode());
    return response.body();
  }

  private static byte[] readAll(InputStream in) throws Exception {
    ByteArrayOutputStream buffer = new ByteArrayOutputStream();
    in.transferTo(buffer);
    return buffer.toByteArray();
  }
}
