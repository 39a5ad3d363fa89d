package loa.exact;

import org.roaringbitmap.RoaringBitmap;
import org.roaringbitmap.longlong.Roaring64NavigableMap;

/**
 * What the reader counted for one alert id: records, distinct recipients, append-time range,
 * records per partition and key/value bytes.
 *
 * <p>Recipients in [0, 2^32) go to a RoaringBitmap (the common case: Loa's and the bench's
 * recipient ids are below 2^32); larger ids and hashed non-decimal keys go to a 64-bit map, so a
 * recipient is never truncated into another one's slot.
 */
final class AlertTally {
  /** the alert id as its raw bytes (UTF-8), decoded only when the result is written */
  final byte[] id;

  final long hash;
  /** next tally in the same slot of {@link ExactReader}'s hash table */
  AlertTally next;

  long records;
  long firstMs = Long.MAX_VALUE;
  long lastMs = Long.MIN_VALUE;
  long keyBytes;
  long valueBytes;
  /** records per partition, indexed like {@link ExactReader}'s partition list */
  final long[] perPartition;

  private final RoaringBitmap small = new RoaringBitmap();
  private Roaring64NavigableMap large;

  AlertTally(byte[] id, long hash, int partitions) {
    this.id = id;
    this.hash = hash;
    this.perPartition = new long[partitions];
  }

  void add(long recipient, long timestampMs, int partition, int keyLen, int valueLen) {
    records++;
    if (timestampMs < firstMs) {
      firstMs = timestampMs;
    }
    if (timestampMs > lastMs) {
      lastMs = timestampMs;
    }
    perPartition[partition]++;
    keyBytes += keyLen;
    valueBytes += valueLen;
    if ((recipient >>> 32) == 0) {
      small.add((int) recipient);
    } else {
      if (large == null) {
        large = new Roaring64NavigableMap();
      }
      large.addLong(recipient);
    }
  }

  long distinct() {
    return small.getLongCardinality() + (large == null ? 0 : large.getLongCardinality());
  }
}
