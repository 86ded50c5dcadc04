package loginflow.bench.kstreams;

import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;
import loginflow.bench.Contract;
import loginflow.bench.LoginEvent;
import loginflow.bench.MetricRecords;
import loginflow.bench.PartitionFront;
import loginflow.bench.PeerArgs;
import loginflow.bench.Slices;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;

/**
 * loginflow's job in Kafka Streams.
 *
 * <p>A processor applies the input contract and loginflow's lateness rule to each input
 * partition (a task of the first sub-topology reads exactly one, in offset order) and turns each
 * on-time event into one record per slice, keyed by its slice key and stamped with its event
 * time. Behind the one repartition (by slice key), a task's stream time is the largest event
 * time of any input partition, so neither the lateness rule nor the closing of windows can
 * follow it: the rule is applied before the repartition, and each input partition multicasts a
 * {@link Watermark} whenever its rule moves past a window end. {@link WindowCount} counts in a
 * cached in-memory store and emits each window once, when every input partition is past it
 * (no changelogs: like the other peers, nothing is recovered).
 *
 * <p>Kafka Streams never ends by itself; the run stops once the application's committed offsets
 * reach the end of the input and of the repartition topic (a commit follows the flush of
 * everything those records produced).
 */
public final class KStreamsPeer {
    private static final byte[] ONE = new byte[0];
    private static final String REPARTITION = "slice-keys";
    private static final AtomicLong CONSUMED = new AtomicLong();
    private static final AtomicLong REJECTED = new AtomicLong();
    private static final AtomicLong LATE = new AtomicLong();
    private static final AtomicLong EMITTED = new AtomicLong();
    private static final AtomicLong FIRST_MESSAGE_MS = new AtomicLong();

    private KStreamsPeer() {}

    /**
     * One task's input partition: rejects and late events stop here, on-time ones go on per
     * slice, followed by a watermark when the partition is done with another window.
     */
    static final class LatenessRule implements Processor<byte[], byte[], String, byte[]> {
        private final Slices slices;
        private final PartitionFront front;
        private ProcessorContext<String, byte[]> context;
        private int partition;
        private long announced = Long.MIN_VALUE;

        LatenessRule(Slices slices, long windowMillis, long latenessMillis) {
            this.slices = slices;
            this.front = new PartitionFront(windowMillis, latenessMillis);
        }

        @Override
        public void init(ProcessorContext<String, byte[]> context) {
            this.context = context;
            // Task 0_p of this sub-topology reads input partition p.
            this.partition = context.taskId().partition();
        }

        @Override
        public void process(Record<byte[], byte[]> record) {
            FIRST_MESSAGE_MS.compareAndSet(0, System.currentTimeMillis());
            CONSUMED.incrementAndGet();
            LoginEvent event = Contract.parse(record.value());
            if (event == null) {
                REJECTED.incrementAndGet();
                return;
            }
            if (front.late(event)) {
                LATE.incrementAndGet();
                return;
            }
            for (int slice = 0; slice < slices.size(); slice++) {
                context.forward(new Record<>(slices.key(slice, event), ONE, event.windowMillis()));
            }
            // After the events, so that on every repartition partition it follows all of them.
            long closedThrough = front.closedThrough();
            if (closedThrough > announced) {
                announced = closedThrough;
                context.forward(new Record<>(
                        Watermark.KEY, new Watermark(partition, closedThrough).encode(), record.timestamp()));
            }
        }
    }

    public static void main(String[] argv) throws Exception {
        PeerArgs args = PeerArgs.parse(argv);
        Slices slices = Slices.parse(args.slicesText);
        MetricRecords records = new MetricRecords(slices, args.windowMillis);
        int threads = Integer.parseInt(args.option("threads", "1"));
        String appId = "bench-kstreams-" + UUID.randomUUID();
        Map<TopicPartition, Long> inputEnds;
        try (Admin admin = Admin.create(Map.of("bootstrap.servers", args.brokers))) {
            inputEnds = endOffsets(admin, args.inputTopic);
        }
        boolean[] reporting = new boolean[inputEnds.size()];
        inputEnds.forEach((partition, end) -> reporting[partition.partition()] = end > 0);

        StreamsBuilder builder = new StreamsBuilder();
        builder.addStateStore(WindowCount.store());
        builder.stream(args.inputTopic, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
                .process(() -> new LatenessRule(slices, args.windowMillis, args.latenessMillis))
                .repartition(Repartitioned.<String, byte[]>as(REPARTITION)
                        .withKeySerde(Serdes.String())
                        .withValueSerde(Serdes.ByteArray())
                        .withStreamPartitioner(Watermark::partitions))
                .process(() -> new WindowCount(slices, records, args.windowMillis, reporting, EMITTED), WindowCount.STORE)
                .to(args.outputTopic, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args.brokers);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args.option("state-dir", "/tmp/kafka-streams"));
        // Commits (and flushes the record cache) once a second: the cache absorbs a key's
        // repeated counts in between, and the stop condition sees the end soon.
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 64L * 1024 * 1024);
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        // The producer settings loginflow's sink uses (bench/peers/common.py output_producer).
        props.put(StreamsConfig.producerPrefix(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG), true);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 50);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "lz4");

        AtomicReference<Throwable> failure = new AtomicReference<>();
        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        streams.setUncaughtExceptionHandler(error -> {
            failure.compareAndSet(null, error);
            return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        double dropped;
        try (Admin admin = Admin.create(Map.of("bootstrap.servers", args.brokers))) {
            streams.start();
            waitForEnd(admin, appId, inputEnds, appId + "-" + REPARTITION + "-repartition", failure);
            dropped = droppedRecords(streams);
        } finally {
            streams.close(Duration.ofSeconds(30));
        }
        double lastOutput = PeerArgs.now();
        Map<String, Object> counters = new LinkedHashMap<>();
        counters.put("consumed", CONSUMED.get());
        counters.put("rejected", REJECTED.get());
        counters.put("late_dropped", LATE.get());
        counters.put("emitted", EMITTED.get());
        counters.put("window_dropped", dropped);
        counters.put("threads", threads);
        args.writeResults(FIRST_MESSAGE_MS.get() / 1000.0, lastOutput, counters);
    }

    private static void waitForEnd(
            Admin admin,
            String appId,
            Map<TopicPartition, Long> inputEnds,
            String repartition,
            AtomicReference<Throwable> failure)
            throws InterruptedException, ExecutionException {
        while (true) {
            if (failure.get() != null) {
                throw new IllegalStateException("a stream thread failed", failure.get());
            }
            Thread.sleep(100);
            Map<TopicPartition, OffsetAndMetadata> committed =
                    admin.listConsumerGroupOffsets(appId).partitionsToOffsetAndMetadata().get();
            if (!reached(committed, inputEnds)) {
                continue;
            }
            // Read after the input's offsets were seen committed: the repartition topic is complete.
            if (reached(committed, endOffsets(admin, repartition))) {
                return;
            }
        }
    }

    private static boolean reached(Map<TopicPartition, OffsetAndMetadata> committed, Map<TopicPartition, Long> ends) {
        return ends.entrySet().stream().allMatch(end -> {
            OffsetAndMetadata offset = committed.get(end.getKey());
            return end.getValue() == 0 || (offset != null && offset.offset() >= end.getValue());
        });
    }

    private static Map<TopicPartition, Long> endOffsets(Admin admin, String topic)
            throws InterruptedException, ExecutionException {
        int partitions = admin.describeTopics(List.of(topic))
                .allTopicNames()
                .get()
                .get(topic)
                .partitions()
                .size();
        Map<TopicPartition, OffsetSpec> latest = new LinkedHashMap<>();
        for (int p = 0; p < partitions; p++) {
            latest.put(new TopicPartition(topic, p), OffsetSpec.latest());
        }
        return admin.listOffsets(latest).all().get().entrySet().stream()
                .collect(Collectors.toMap(Map.Entry::getKey, e -> e.getValue().offset()));
    }

    /** Records Kafka Streams dropped, summed over its tasks (0: nothing here expires on stream time). */
    private static double droppedRecords(KafkaStreams streams) {
        double dropped = 0;
        for (Metric metric : streams.metrics().values()) {
            if (metric.metricName().name().equals("dropped-records-total")
                    && metric.metricValue() instanceof Double value) {
                dropped += value;
            }
        }
        return dropped;
    }
}
