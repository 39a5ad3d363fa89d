package loa.exact;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

/** The command line of {@link ExactReader}; an unknown or missing option is an error. */
final class Options {
  static final String USAGE =
      "usage: java -jar loa-exact.jar --bootstrap HOST:PORT --topics t1,t2"
          + " [--from beginning|end | --from-offsets PATH] --stop-file PATH --idle-s N --out result.json"
          + " [--progress-s 5] [--ready-file PATH] [--property key=value]...";

  String bootstrap;
  List<String> topics = new ArrayList<>();
  boolean fromEnd;
  /** Lines "topic partition offset": where each partition starts (others from offset 0). */
  Path fromOffsets;
  Path stopFile;
  long idleNs = -1;
  Path out;
  long progressNs = 5_000_000_000L;
  Path readyFile;
  final Properties properties = new Properties();

  static Options parse(String[] args) {
    Options o = new Options();
    for (int i = 0; i < args.length; i++) {
      String name = args[i];
      if (i + 1 >= args.length) {
        throw new IllegalArgumentException(name + " needs a value");
      }
      String v = args[++i];
      switch (name) {
        case "--bootstrap" -> o.bootstrap = v;
        case "--topics" -> {
          for (String t : v.split(",")) {
            if (!t.isBlank()) {
              o.topics.add(t.strip());
            }
          }
        }
        case "--from" -> {
          if (!v.equals("beginning") && !v.equals("end")) {
            throw new IllegalArgumentException("--from is beginning or end, not " + v);
          }
          o.fromEnd = v.equals("end");
        }
        case "--from-offsets" -> o.fromOffsets = Path.of(v);
        case "--stop-file" -> o.stopFile = Path.of(v);
        case "--idle-s" -> o.idleNs = seconds(name, v);
        case "--out" -> o.out = Path.of(v);
        case "--progress-s" -> o.progressNs = seconds(name, v);
        case "--ready-file" -> o.readyFile = Path.of(v);
        case "--property" -> {
          int eq = v.indexOf('=');
          if (eq <= 0) {
            throw new IllegalArgumentException("--property wants key=value, not " + v);
          }
          o.properties.put(v.substring(0, eq), v.substring(eq + 1));
        }
        default -> throw new IllegalArgumentException("unknown option " + name);
      }
    }
    if (o.bootstrap == null || o.topics.isEmpty() || o.stopFile == null || o.out == null) {
      throw new IllegalArgumentException("--bootstrap, --topics, --stop-file and --out are needed");
    }
    if (o.fromEnd && o.fromOffsets != null) {
      throw new IllegalArgumentException("--from end and --from-offsets exclude each other");
    }
    if (o.idleNs < 0) {
      throw new IllegalArgumentException("--idle-s is needed");
    }
    return o;
  }

  private static long seconds(String name, String v) {
    double s;
    try {
      s = Double.parseDouble(v);
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(name + " wants seconds, not " + v, e);
    }
    if (!(s > 0) || Double.isInfinite(s)) {
      throw new IllegalArgumentException(name + " wants positive seconds, not " + v);
    }
    return (long) (s * 1e9);
  }
}
