package loginflow.bench.kstreams;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import loginflow.bench.MetricRecords;
import loginflow.bench.Slices;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;

/**
 * The tumbling-window count behind the repartition, closed by the input partitions' watermarks.
 *
 * <p>A task here reads one repartition partition, which every input partition feeds. Kafka
 * Streams' windowed aggregations close a window on the task's stream time, the largest timestamp
 * from any of them: once one input partition is read an hour ahead (the input's trailer), the
 * windows the partitions read behind still add to have expired, whatever the grace short of
 * that hour. So each input partition multicasts how far it is done ({@link Watermark}, in the
 * order of its own records), and a window is emitted and forgotten once the minimum over all
 * input partitions has passed its end, as Flink's watermarks do: exact for any read skew, and
 * one record per key and window, as a suppression until the window closes gives.
 *
 * <p>The counts are in an in-memory key-value store with a record cache and no changelog,
 * keyed by window start, then slice key, so the windows to close are one range scan.
 */
final class WindowCount implements Processor<String, byte[], byte[], byte[]> {
    static final String STORE = "counts";
    private static final Bytes FIRST = Bytes.wrap(new byte[0]);

    private final Slices slices;
    private final MetricRecords records;
    private final long windowMillis;
    private final AtomicLong emitted;
    private final long[] closedThrough;
    private long closed = Long.MIN_VALUE;
    private ProcessorContext<byte[], byte[]> context;
    private KeyValueStore<Bytes, Long> counts;

    /**
     * @param reporting per input partition, whether it sends watermarks: one with no records at
     *     the start never would, and must not hold the others back
     */
    WindowCount(Slices slices, MetricRecords records, long windowMillis, boolean[] reporting, AtomicLong emitted) {
        this.slices = slices;
        this.records = records;
        this.windowMillis = windowMillis;
        this.emitted = emitted;
        this.closedThrough = new long[reporting.length];
        for (int partition = 0; partition < reporting.length; partition++) {
            closedThrough[partition] = reporting[partition] ? Long.MIN_VALUE : Long.MAX_VALUE;
        }
    }

    static StoreBuilder<KeyValueStore<Bytes, Long>> store() {
        return Stores.keyValueStoreBuilder(Stores.inMemoryKeyValueStore(STORE), Serdes.Bytes(), Serdes.Long())
                .withCachingEnabled()
                .withLoggingDisabled();
    }

    @Override
    public void init(ProcessorContext<byte[], byte[]> context) {
        this.context = context;
        this.counts = context.getStateStore(STORE);
    }

    @Override
    public void process(Record<String, byte[]> record) {
        if (Watermark.KEY.equals(record.key())) {
            advance(Watermark.decode(record.value()));
            return;
        }
        Bytes key = countKey(Math.floorDiv(record.timestamp(), windowMillis) * windowMillis, record.key());
        Long count = counts.get(key);
        counts.put(key, count == null ? 1L : count + 1);
    }

    private void advance(Watermark mark) {
        int partition = mark.partition();
        closedThrough[partition] = Math.max(closedThrough[partition], mark.closedThrough());
        long through = Arrays.stream(closedThrough).min().orElseThrow();
        if (through <= closed) {
            return;
        }
        closed = through;
        // Windows ending at or before `through` start at or before through - window; 0xFF sorts
        // after every UTF-8 slice key of that start.
        byte[] last = ByteBuffer.allocate(Long.BYTES + 1)
                .put(startBytes(through - windowMillis))
                .put((byte) 0xFF)
                .array();
        List<KeyValue<Bytes, Long>> done = new ArrayList<>();
        try (KeyValueIterator<Bytes, Long> due = counts.range(FIRST, Bytes.wrap(last))) {
            due.forEachRemaining(done::add);
        }
        for (KeyValue<Bytes, Long> entry : done) {
            counts.delete(entry.key);
            byte[] raw = entry.key.get();
            long start = ByteBuffer.wrap(raw).getLong() ^ Long.MIN_VALUE;
            String key = new String(raw, Long.BYTES, raw.length - Long.BYTES, StandardCharsets.UTF_8);
            if (slices.emitted(key, entry.value)) {
                emitted.incrementAndGet();
                context.forward(new Record<>(records.key(start, key), records.value(start, key, entry.value), start));
            }
        }
    }

    private static Bytes countKey(long windowStart, String sliceKey) {
        byte[] key = sliceKey.getBytes(StandardCharsets.UTF_8);
        return Bytes.wrap(ByteBuffer.allocate(Long.BYTES + key.length)
                .put(startBytes(windowStart))
                .put(key)
                .array());
    }

    /** Big-endian with the sign bit flipped: the store's unsigned byte order is then time order. */
    private static byte[] startBytes(long windowStart) {
        return ByteBuffer.allocate(Long.BYTES).putLong(windowStart ^ Long.MIN_VALUE).array();
    }
}
