package loginflow.bench.kstreams;

import java.nio.ByteBuffer;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

/**
 * A control record on the repartition topic: input partition {@code partition} forwards nothing
 * more to windows ending at or before {@code closedThrough}. It is multicast to every repartition
 * partition, so each downstream task hears from every input partition.
 *
 * @param partition the input partition it speaks for
 * @param closedThrough epoch milliseconds, a window end (PartitionFront.closedThrough)
 */
record Watermark(int partition, long closedThrough) {
    /** Its key: no slice key is empty (each starts with its slice's index). */
    static final String KEY = "";

    byte[] encode() {
        return ByteBuffer.allocate(Integer.BYTES + Long.BYTES)
                .putInt(partition)
                .putLong(closedThrough)
                .array();
    }

    static Watermark decode(byte[] value) {
        ByteBuffer buffer = ByteBuffer.wrap(value);
        return new Watermark(buffer.getInt(), buffer.getLong());
    }

    /** The repartition's StreamPartitioner: a slice key goes where the default one puts it, a watermark everywhere. */
    static Optional<Set<Integer>> partitions(String topic, String key, byte[] value, int numPartitions) {
        if (!KEY.equals(key)) {
            return Optional.empty();
        }
        return Optional.of(IntStream.range(0, numPartitions).boxed().collect(Collectors.toUnmodifiableSet()));
    }
}
