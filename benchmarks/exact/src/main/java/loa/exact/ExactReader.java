package loa.exact;

import java.io.IOException;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetOutOfRangeException;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteBufferDeserializer;

/**
 * The benchmarks' independent exactness counter: follows Loa's send-task topics live with the
 * Java Kafka client (no code shared with Loa) and counts, per alert id, the committed records,
 * distinct recipients, duplicates, first/last LogAppendTime and records per partition.
 *
 * <p>Where it sits: beside the sustained bench (benchmarks/run.py), reading the
 * retention-limited {@code <prefix>.sends.<priority>} topics while Loa writes them, so every
 * record is counted before retention deletes it. Guarantee: every offset between the start
 * offset and the end offset observed after the stop file appeared is either counted (a committed
 * record), skipped by the client as a transaction marker or an aborted record (read_committed),
 * or counted as {@code missed} (deleted before it was read: the fetch fell below the log start).
 * A result with {@code missed > 0} or {@code reached_end == false} is not exact.
 *
 * <p>Usage: {@code java -jar loa-exact.jar --bootstrap HOST:PORT --topics t1,t2 [--from
 * beginning|end] --stop-file PATH --idle-s N --out result.json [--progress-s 5] [--ready-file
 * PATH] [--property k=v]...}. Exit 0 with the result written; 2 on bad usage or missing topics;
 * 3 on a read it cannot account for (an offset beyond the end).
 */
public final class ExactReader {
  private static final byte[] PREFIX = "{\"alert_id\":\"".getBytes(StandardCharsets.US_ASCII);

  /** the id of values without one (brokerclock's "" group) */
  private static final byte[] EMPTY = new byte[0];

  /** Keys that are not plain decimal are hashed into this half of the 64-bit space. */
  private static final long HASHED = 1L << 63;

  private final Options opts;
  private final PrintStream err = System.err;
  private final List<TopicPartition> partitions = new ArrayList<>();
  private final Map<TopicPartition, Integer> index = new HashMap<>();
  private long[] startOffsets;
  private long[] recordsPer;
  private long[] missedPer;
  private long[] stopEnds;

  /** hash table of alert tallies by hash of the id bytes (power-of-two slots, chained) */
  private AlertTally[] table = new AlertTally[64];

  private final List<AlertTally> alerts = new ArrayList<>();
  private AlertTally last;
  private long records;
  private long missed;

  private ExactReader(Options opts) {
    this.opts = opts;
  }

  public static void main(String[] args) throws Exception {
    Options opts;
    try {
      opts = Options.parse(args);
    } catch (IllegalArgumentException e) {
      System.err.println("loa-exact: " + e.getMessage());
      System.err.println(Options.USAGE);
      System.exit(2);
      return;
    }
    // before the first Kafka class creates a logger: warnings and errors only, on stderr
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
    System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");
    System.exit(new ExactReader(opts).run());
  }

  private int run() throws IOException {
    try (KafkaConsumer<ByteBuffer, ByteBuffer> consumer = new KafkaConsumer<>(consumerProps())) {
      String missing = assign(consumer);
      if (missing != null) {
        err.println("loa-exact: " + missing);
        return 2;
      }
      if (opts.readyFile != null) {
        writeAtomically(opts.readyFile, "ready\n");
      }
      return follow(consumer);
    }
  }

  private Properties consumerProps() {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, opts.bootstrap);
    p.put(ConsumerConfig.CLIENT_ID_CONFIG, "loa-exact-reader");
    p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    // a position below the log start must reach us as an error: it is counted as missed
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
    p.put(ConsumerConfig.ALLOW_AUTO_CREATE_TOPICS_CONFIG, "false");
    // the deserializers hand out views into the fetched buffers: no copy per key or value
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteBufferDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteBufferDeserializer.class.getName());
    // large fetches: one round trip carries tens of MB when behind, waits briefly when live
    p.put(ConsumerConfig.FETCH_MIN_BYTES_CONFIG, String.valueOf(1 << 20));
    p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "100");
    p.put(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, String.valueOf(64 << 20));
    p.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, String.valueOf(8 << 20));
    p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "100000");
    p.put(ConsumerConfig.RECEIVE_BUFFER_CONFIG, String.valueOf(4 << 20));
    p.putAll(opts.properties);
    return p;
  }

  /** Assigns every partition of the topics and seeks to the start; an error text or null. */
  private String assign(KafkaConsumer<ByteBuffer, ByteBuffer> consumer) {
    for (String topic : opts.topics) {
      List<PartitionInfo> infos = consumer.partitionsFor(topic, Duration.ofSeconds(30));
      if (infos == null || infos.isEmpty()) {
        return "topic " + topic + " does not exist (or has no partitions)";
      }
      List<TopicPartition> tps = new ArrayList<>();
      for (PartitionInfo info : infos) {
        tps.add(new TopicPartition(topic, info.partition()));
      }
      tps.sort((a, b) -> Integer.compare(a.partition(), b.partition()));
      for (TopicPartition tp : tps) {
        index.put(tp, partitions.size());
        partitions.add(tp);
      }
    }
    int n = partitions.size();
    startOffsets = new long[n];
    recordsPer = new long[n];
    missedPer = new long[n];
    consumer.assign(partitions);
    if (opts.fromEnd) {
      // read_committed: the last stable offset, so an open transaction is read once committed
      Map<TopicPartition, Long> ends = consumer.endOffsets(partitions, Duration.ofSeconds(30));
      for (int i = 0; i < n; i++) {
        startOffsets[i] = ends.get(partitions.get(i));
      }
    }
    if (opts.fromOffsets != null) {
      // the offsets a caller noted before its run (e.g. the end offsets before one alert):
      // what is below them is not this count's; a partition not named starts at offset 0
      try {
        for (String line : Files.readAllLines(opts.fromOffsets, StandardCharsets.UTF_8)) {
          String[] f = line.strip().split("\\s+");
          if (f.length != 3) {
            continue;
          }
          Integer i = index.get(new TopicPartition(f[0], Integer.parseInt(f[1])));
          if (i == null) {
            return "--from-offsets names " + f[0] + "-" + f[1] + ", not a partition of --topics";
          }
          startOffsets[i] = Long.parseLong(f[2]);
        }
      } catch (IOException | NumberFormatException e) {
        return "cannot read --from-offsets " + opts.fromOffsets + ": " + e;
      }
    }
    // from the beginning means offset 0, not the log start: what retention already deleted is
    // reported as missed, never silently left out
    for (int i = 0; i < n; i++) {
      consumer.seek(partitions.get(i), startOffsets[i]);
    }
    return null;
  }

  private int follow(KafkaConsumer<ByteBuffer, ByteBuffer> consumer) throws IOException {
    final long started = System.nanoTime();
    long lastRecord = started;
    long stopSeen = 0;
    long nextProgress = started + opts.progressNs;
    long progressRecords = 0;
    long progressAt = started;
    boolean reachedEnd;
    Duration pollTimeout = Duration.ofMillis(100);
    while (true) {
      ConsumerRecords<ByteBuffer, ByteBuffer> batch;
      try {
        batch = consumer.poll(pollTimeout);
      } catch (OffsetOutOfRangeException e) {
        String error = skipDeleted(consumer, e.offsetOutOfRangePartitions());
        if (error != null) {
          err.println("loa-exact: " + error);
          return 3;
        }
        continue;
      }
      long now = System.nanoTime();
      if (!batch.isEmpty()) {
        lastRecord = now;
        for (TopicPartition tp : batch.partitions()) {
          tally(index.get(tp), batch.records(tp));
        }
      }
      if (now >= nextProgress) {
        progress(consumer, now - started, records - progressRecords, now - progressAt);
        progressRecords = records;
        progressAt = now;
        nextProgress = now + opts.progressNs;
      }
      if (stopEnds == null) {
        if (Files.exists(opts.stopFile)) {
          stopSeen = System.nanoTime();
          Map<TopicPartition, Long> ends = consumer.endOffsets(partitions, Duration.ofSeconds(60));
          stopEnds = new long[partitions.size()];
          for (int i = 0; i < stopEnds.length; i++) {
            stopEnds[i] = ends.get(partitions.get(i));
          }
        }
        continue;
      }
      if (atStopEnds(consumer)) {
        reachedEnd = true;
        break;
      }
      if (now - Math.max(lastRecord, stopSeen) > opts.idleNs) {
        reachedEnd = false;
        break;
      }
    }
    long done = System.nanoTime();
    progress(consumer, done - started, records - progressRecords, done - progressAt);
    writeAtomically(opts.out, result(consumer, reachedEnd, (done - started) / 1e9));
    return 0;
  }

  private boolean atStopEnds(KafkaConsumer<ByteBuffer, ByteBuffer> consumer) {
    for (int i = 0; i < stopEnds.length; i++) {
      if (consumer.position(partitions.get(i)) < stopEnds[i]) {
        return false;
      }
    }
    return true;
  }

  /**
   * The fetch position of some partitions fell below their log start (retention deleted the
   * records first): count the gap as missed and go on from the log start.
   */
  private String skipDeleted(
      KafkaConsumer<ByteBuffer, ByteBuffer> consumer, Map<TopicPartition, Long> fetchOffsets) {
    Map<TopicPartition, Long> starts =
        consumer.beginningOffsets(fetchOffsets.keySet(), Duration.ofSeconds(60));
    Map<TopicPartition, Long> ends =
        consumer.endOffsets(fetchOffsets.keySet(), Duration.ofSeconds(60));
    for (Map.Entry<TopicPartition, Long> entry : fetchOffsets.entrySet()) {
      TopicPartition tp = entry.getKey();
      long at = entry.getValue();
      long logStart = starts.get(tp);
      if (at < logStart) {
        int i = index.get(tp);
        missedPer[i] += logStart - at;
        missed += logStart - at;
        consumer.seek(tp, logStart);
      } else if (at > ends.get(tp)) {
        return "offset " + at + " of " + tp + " is beyond its end " + ends.get(tp)
            + " (topic deleted and recreated?): the count cannot be exact";
      }
      // else: the log start moved again between the fetch and our look; the next fetch tells
    }
    return null;
  }

  private void tally(int partition, List<ConsumerRecord<ByteBuffer, ByteBuffer>> batch) {
    long n = 0;
    for (ConsumerRecord<ByteBuffer, ByteBuffer> rec : batch) {
      ByteBuffer key = rec.key();
      ByteBuffer value = rec.value();
      AlertTally alert = alertOf(value);
      alert.add(
          recipientOf(key),
          rec.timestamp(),
          partition,
          key == null ? 0 : key.remaining(),
          value == null ? 0 : value.remaining());
      n++;
    }
    records += n;
    recordsPer[partition] += n;
  }

  /** The tally of the value's alert id: bytes 13.. up to the next quote, as brokerclock reads it. */
  private AlertTally alertOf(ByteBuffer value) {
    if (value == null) {
      return tallyOf(EMPTY, 0, 0);
    }
    if (!value.hasArray()) { // not from the Java client's heap buffers; copy once
      byte[] copy = new byte[value.remaining()];
      value.duplicate().get(copy);
      return alertOf(copy, 0, copy.length);
    }
    int from = value.arrayOffset() + value.position();
    return alertOf(value.array(), from, from + value.remaining());
  }

  private AlertTally alertOf(byte[] buf, int from, int to) {
    int start = from + PREFIX.length;
    if (to < start || !Arrays.equals(buf, from, start, PREFIX, 0, PREFIX.length)) {
      return tallyOf(EMPTY, 0, 0);
    }
    // records come in runs of one alert: the last one's id (which holds no quote) followed by
    // a quote settles it without scanning for the quote (Arrays.equals on ranges is vectorized)
    AlertTally cached = last;
    if (cached != null) {
      int end = start + cached.id.length;
      if (end < to
          && buf[end] == '"'
          && Arrays.equals(buf, start, end, cached.id, 0, cached.id.length)) {
        return cached;
      }
    }
    int end = start;
    while (end < to && buf[end] != '"') {
      end++;
    }
    if (end == to) { // no closing quote: not an alert id
      return tallyOf(EMPTY, 0, 0);
    }
    return tallyOf(buf, start, end);
  }

  private AlertTally tallyOf(byte[] buf, int start, int end) {
    AlertTally cached = last;
    if (cached != null && Arrays.equals(buf, start, end, cached.id, 0, cached.id.length)) {
      return cached;
    }
    long hash = hashOf(buf, start, end);
    int slot = (int) (hash & (table.length - 1));
    for (AlertTally t = table[slot]; t != null; t = t.next) {
      if (t.hash == hash && Arrays.equals(buf, start, end, t.id, 0, t.id.length)) {
        last = t;
        return t;
      }
    }
    AlertTally t = new AlertTally(Arrays.copyOfRange(buf, start, end), hash, partitions.size());
    t.next = table[slot];
    table[slot] = t;
    alerts.add(t);
    if (alerts.size() * 2 > table.length) {
      grow();
    }
    last = t;
    return t;
  }

  private void grow() {
    AlertTally[] bigger = new AlertTally[table.length * 2];
    for (AlertTally t : alerts) {
      int slot = (int) (t.hash & (bigger.length - 1));
      t.next = bigger[slot];
      bigger[slot] = t;
    }
    table = bigger;
  }

  /** FNV-1a 64 over bytes [start, end) of buf, then a finalizing mix (spreads the low bits). */
  private static long hashOf(byte[] buf, int start, int end) {
    long h = 0xcbf29ce484222325L;
    for (int i = start; i < end; i++) {
      h ^= buf[i] & 0xff;
      h *= 0x100000001b3L;
    }
    h ^= h >>> 33;
    h *= 0xff51afd7ed558ccdL;
    h ^= h >>> 33;
    return h;
  }

  /**
   * The recipient id of a key: its ASCII decimal value (Loa's and the peers' keys), or, for any
   * other key, a 64-bit hash with the top bit set (so it cannot meet a decimal id below 2^63).
   */
  static long recipientOf(ByteBuffer key) {
    if (key == null) {
      return HASHED;
    }
    byte[] buf;
    int from;
    if (key.hasArray()) {
      buf = key.array();
      from = key.arrayOffset() + key.position();
    } else {
      buf = new byte[key.remaining()];
      key.duplicate().get(buf);
      from = 0;
    }
    int to = from + key.remaining();
    int len = to - from;
    if (len > 0 && len <= 18) { // 18 digits cannot overflow a long
      long v = 0;
      int i = from;
      for (; i < to; i++) {
        int d = buf[i] - '0';
        if (d < 0 || d > 9) {
          break;
        }
        v = v * 10 + d;
      }
      if (i == to) {
        return v;
      }
    }
    return HASHED | hashOf(buf, from, to);
  }

  private void progress(
      KafkaConsumer<ByteBuffer, ByteBuffer> consumer, long sinceStart, long n, long over) {
    long lag = 0;
    for (TopicPartition tp : partitions) {
      OptionalLong l = consumer.currentLag(tp);
      if (l.isPresent()) {
        lag += l.getAsLong();
      }
    }
    err.printf(
        Locale.ROOT,
        "loa-exact: %.1f s  records %,d  %,.0f/s  lag %,d  missed %,d  alerts %d%s%n",
        sinceStart / 1e9,
        records,
        n / Math.max(over / 1e9, 1e-9),
        lag,
        missed,
        alerts.size(),
        stopEnds == null ? "" : "  (stopping)");
  }

  private String result(
      KafkaConsumer<ByteBuffer, ByteBuffer> consumer, boolean reachedEnd, double seconds) {
    Json j = new Json();
    j.open('{');
    j.key("version").num(1);
    j.key("bootstrap").str(opts.bootstrap);
    j.key("from").str(opts.fromEnd ? "end" : opts.fromOffsets != null ? "offsets" : "beginning");
    j.key("reached_end").bool(reachedEnd);
    j.key("exact").bool(reachedEnd && missed == 0);
    j.key("records").num(records);
    j.key("missed").num(missed);
    j.key("seconds").num(seconds);
    j.key("per_s").num(records / Math.max(seconds, 1e-9));
    // CPU time of the whole process (JVM start, GC and JIT included): on a shared machine the
    // rate per CPU second is what one free core would give
    double cpu = cpuSeconds();
    j.key("cpu_s").num(cpu);
    j.key("per_cpu_s").num(records / Math.max(cpu, 1e-9));
    j.key("topics").open('[');
    for (String t : opts.topics) {
      j.str(t);
    }
    j.close(']');
    j.key("partitions").open('[');
    for (int i = 0; i < partitions.size(); i++) {
      TopicPartition tp = partitions.get(i);
      j.open('{');
      j.key("topic").str(tp.topic());
      j.key("partition").num(tp.partition());
      j.key("start_offset").num(startOffsets[i]);
      j.key("stop_end_offset").num(stopEnds == null ? -1 : stopEnds[i]);
      j.key("position").num(consumer.position(tp));
      j.key("records").num(recordsPer[i]);
      j.key("missed").num(missedPer[i]);
      j.close('}');
    }
    j.close(']');
    j.key("alerts").open('{');
    for (AlertTally a : alerts) {
      long distinct = a.distinct();
      j.key(new String(a.id, StandardCharsets.UTF_8)).open('{');
      j.key("tasks").num(a.records);
      j.key("distinct").num(distinct);
      j.key("duplicates").num(a.records - distinct);
      j.key("first_ms").num(a.firstMs);
      j.key("last_ms").num(a.lastMs);
      j.key("key_bytes").num(a.keyBytes);
      j.key("value_bytes").num(a.valueBytes);
      j.key("per_partition").open('{');
      for (String topic : opts.topics) {
        j.key(topic).open('{');
        for (int i = 0; i < partitions.size(); i++) {
          TopicPartition tp = partitions.get(i);
          if (tp.topic().equals(topic) && a.perPartition[i] > 0) {
            j.key(String.valueOf(tp.partition())).num(a.perPartition[i]);
          }
        }
        j.close('}');
      }
      j.close('}');
      j.close('}');
    }
    j.close('}');
    j.close('}');
    return j.text() + "\n";
  }

  private static double cpuSeconds() {
    if (ManagementFactory.getOperatingSystemMXBean()
        instanceof com.sun.management.OperatingSystemMXBean os) {
      return os.getProcessCpuTime() / 1e9;
    }
    return Double.NaN;
  }

  private static void writeAtomically(Path path, String text) throws IOException {
    Path tmp = path.resolveSibling(path.getFileName() + ".tmp");
    Files.writeString(tmp, text, StandardCharsets.UTF_8);
    Files.move(tmp, path, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }
}
