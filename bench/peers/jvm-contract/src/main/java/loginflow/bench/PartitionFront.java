package loginflow.bench;

/**
 * loginflow's lateness rule for one input partition, read in offset order: an event whose
 * window ends at or before the partition's front (largest event time counted so far) minus the
 * allowed lateness is late (docs/event-time.md). It depends on that partition's log alone.
 */
public final class PartitionFront {
    private final long windowMillis;
    private final long latenessMillis;
    private long front = Long.MIN_VALUE;

    public PartitionFront(long windowMillis, long latenessMillis) {
        this.windowMillis = windowMillis;
        this.latenessMillis = latenessMillis;
    }

    /** Whether `event` is late; an on-time event moves the front. */
    public boolean late(LoginEvent event) {
        long windowEnd = Math.floorDiv(event.windowMillis(), windowMillis) * windowMillis + windowMillis;
        // Both sides are whole milliseconds, so comparing floored instants is exact.
        if (front != Long.MIN_VALUE && windowEnd + latenessMillis <= front) {
            return true;
        }
        front = Math.max(front, event.frontMillis());
        return false;
    }

    /**
     * The end of the last window this partition is done with: a later event is on time only if
     * its window ends after front - lateness, so no window ending at or before this gains one
     * (Long.MIN_VALUE before the first event).
     */
    public long closedThrough() {
        if (front == Long.MIN_VALUE) {
            return Long.MIN_VALUE;
        }
        return Math.floorDiv(front - latenessMillis, windowMillis) * windowMillis;
    }
}
