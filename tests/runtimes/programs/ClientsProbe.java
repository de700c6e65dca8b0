import java.net.URI;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * JVM client libraries as applications use them, with their defaults and nothing detour-specific:
 * compiled at test time against the jars of programs/jvm-clients/pom.xml (Maven Central). Prints
 * the response body on stdout; a failure goes to stderr with exit code 1.
 *
 *   java -cp ... ClientsProbe reactor-netty-nio|reactor-netty-epoll|httpclient5|okhttp URL
 *   java -cp ... ClientsProbe jdbc jdbc:postgresql://host:port/db user password
 *
 * reactor-netty-nio   Reactor Netty's HttpClient (Spring WebClient's engine) on the NIO transport
 * reactor-netty-epoll the same on Netty's native epoll transport (fails if epoll is unavailable)
 * httpclient5         Apache HttpClient 5, HttpClients.createDefault()
 * okhttp              new OkHttpClient()
 * jdbc                the PostgreSQL JDBC driver: the database, the server's and the client's address
 */
public class ClientsProbe {
  private static final Duration TIMEOUT = Duration.ofSeconds(10);

  public static void main(String[] args) throws Exception {
    String mode = args[0];
    try {
      String body =
          switch (mode) {
            case "reactor-netty-nio" -> reactorNetty(URI.create(args[1]), false);
            case "reactor-netty-epoll" -> reactorNetty(URI.create(args[1]), true);
            case "httpclient5" -> httpClient5(URI.create(args[1]));
            case "okhttp" -> okHttp(URI.create(args[1]));
            case "jdbc" -> jdbc(args[1], args[2], args[3]);
            default -> throw new IllegalArgumentException("unknown mode " + mode);
          };
      System.out.print(body);
      System.out.flush();
      System.exit(0);
    } catch (Throwable e) {
      System.err.println("probe " + mode + " failed: " + e);
      System.exit(1);
    }
  }

  private static String reactorNetty(URI uri, boolean epoll) {
    if (epoll && !io.netty.channel.epoll.Epoll.isAvailable())
      throw new IllegalStateException("epoll unavailable", io.netty.channel.epoll.Epoll.unavailabilityCause());
    reactor.netty.resources.LoopResources loops = reactor.netty.resources.LoopResources.create("probe", 1, true);
    try {
      reactor.netty.http.client.HttpClient client =
          reactor.netty.http.client.HttpClient.create()
              .runOn(loops, epoll)
              .responseTimeout(TIMEOUT)
              .doOnConnected(c -> System.err.println("reactor-netty: channel " + c.channel().getClass().getName()));
      return client
          .get()
          .uri(uri)
          .responseSingle(
              (response, content) -> {
                if (response.status().code() != 200)
                  throw new IllegalStateException("status " + response.status());
                return content.asString();
              })
          .block(TIMEOUT);
    } finally {
      loops.disposeLater().block(TIMEOUT);
    }
  }

  private static String httpClient5(URI uri) throws Exception {
    try (org.apache.hc.client5.http.impl.classic.CloseableHttpClient client =
        org.apache.hc.client5.http.impl.classic.HttpClients.createDefault()) {
      return client.execute(
          new org.apache.hc.client5.http.classic.methods.HttpGet(uri),
          response -> {
            if (response.getCode() != 200) throw new IllegalStateException("status " + response.getCode());
            return org.apache.hc.core5.http.io.entity.EntityUtils.toString(response.getEntity());
          });
    }
  }

  private static String okHttp(URI uri) throws Exception {
    okhttp3.OkHttpClient client =
        new okhttp3.OkHttpClient.Builder().callTimeout(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS).build();
    // No .proxy(...): OkHttp would use ProxySelector.getDefault(), i.e. the JVM's proxy properties if set.
    System.err.println("okhttp: proxy selector " + client.proxySelector());
    try (okhttp3.Response response = client.newCall(new okhttp3.Request.Builder().url(uri.toURL()).build()).execute()) {
      if (response.code() != 200) throw new IllegalStateException("status " + response.code());
      return response.body().string();
    } finally {
      client.dispatcher().executorService().shutdown();
      client.connectionPool().evictAll();
    }
  }

  private static String jdbc(String url, String user, String password) throws Exception {
    DriverManager.setLoginTimeout((int) TIMEOUT.toSeconds());
    try (Connection connection = DriverManager.getConnection(url, user, password);
        Statement statement = connection.createStatement();
        ResultSet rows =
            statement.executeQuery(
                "SELECT current_database(), host(inet_server_addr()), host(inet_client_addr())")) {
      rows.next();
      return "{\"app\":\"postgres\",\"database\":\"" + rows.getString(1) + "\",\"server\":\""
          + rows.getString(2) + "\",\"client\":\"" + rows.getString(3) + "\"}\n";
    }
  }
}
