package loginflow.bench.flink;

import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import loginflow.bench.Contract;
import loginflow.bench.LoginEvent;
import loginflow.bench.MetricRecords;
import loginflow.bench.PartitionFront;
import loginflow.bench.PeerArgs;
import loginflow.bench.Slices;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.RuntimeExecutionMode;
import org.apache.flink.api.common.accumulators.DoubleMinimum;
import org.apache.flink.api.common.accumulators.LongCounter;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.PipelineOptions;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerRecord;

/**
 * loginflow's job in Apache Flink's DataStream API, in a local MiniCluster.
 *
 * <p>A bounded KafkaSource reads every partition from the earliest offset to the end offsets it
 * finds at the start. Watermarks are generated per partition (split) with the allowed lateness as
 * the out-of-orderness bound, so a window closes once every partition's event time passed its
 * end plus the lateness; a finished partition stops holding the others back, so no idleness
 * timeout is needed. Each valid event becomes one element per slice, keyed by its slice key,
 * counted incrementally (AggregateFunction) in tumbling event-time windows.
 *
 * <p>Flink judges lateness against the operator's watermark, the minimum over all partitions,
 * which is more lenient than loginflow's rule (an event's own partition's front). The rule is
 * therefore applied as the records are read, chained to the source (one subtask reads a
 * partition in offset order); its late events and the window's late side output are counted.
 */
public final class FlinkPeer {
    private static final OutputTag<String> WINDOW_LATE = new OutputTag<>("window-late", TypeInformation.of(String.class));

    private FlinkPeer() {}

    /** One record as read: its partition and the valid event, or null for a reject. */
    public static final class Read {
        public int partition;
        public LoginEvent event;

        Read(int partition, LoginEvent event) {
            this.partition = partition;
            this.event = event;
        }
    }

    /** A closed window's count of one slice key. */
    public static final class Metric {
        public long windowStart;
        public String key;
        public long count;

        public Metric() {}

        Metric(long windowStart, String key, long count) {
            this.windowStart = windowStart;
            this.key = key;
            this.count = count;
        }
    }

    static final class Deserializer implements KafkaRecordDeserializationSchema<Read> {
        @Override
        public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Read> out) {
            out.collect(new Read(record.partition(), Contract.parse(record.value())));
        }

        @Override
        public TypeInformation<Read> getProducedType() {
            return TypeInformation.of(Read.class);
        }
    }

    /** Rejects and per-partition late events stop here; each on-time event goes on once per slice. */
    static final class LatenessRule extends ProcessFunction<Read, String> {
        private final Slices slices;
        private final long windowMillis;
        private final long latenessMillis;
        private transient Map<Integer, PartitionFront> fronts;
        private final LongCounter consumed = new LongCounter();
        private final LongCounter rejected = new LongCounter();
        private final LongCounter late = new LongCounter();
        private final DoubleMinimum firstMessage = new DoubleMinimum();
        private boolean started;

        LatenessRule(Slices slices, long windowMillis, long latenessMillis) {
            this.slices = slices;
            this.windowMillis = windowMillis;
            this.latenessMillis = latenessMillis;
        }

        @Override
        public void open(OpenContext context) {
            fronts = new HashMap<>();
            getRuntimeContext().addAccumulator("consumed", consumed);
            getRuntimeContext().addAccumulator("rejected", rejected);
            getRuntimeContext().addAccumulator("late", late);
            getRuntimeContext().addAccumulator("first_message", firstMessage);
        }

        @Override
        public void processElement(Read read, Context context, Collector<String> out) {
            if (!started) {
                started = true;
                firstMessage.add(PeerArgs.now());
            }
            consumed.add(1);
            LoginEvent event = read.event;
            if (event == null) {
                rejected.add(1);
                return;
            }
            PartitionFront front =
                    fronts.computeIfAbsent(read.partition, p -> new PartitionFront(windowMillis, latenessMillis));
            if (front.late(event)) {
                late.add(1);
                return;
            }
            for (int slice = 0; slice < slices.size(); slice++) {
                out.collect(slices.key(slice, event));
            }
        }
    }

    static final class Count implements AggregateFunction<String, Long, Long> {
        @Override
        public Long createAccumulator() {
            return 0L;
        }

        @Override
        public Long add(String key, Long count) {
            return count + 1;
        }

        @Override
        public Long getResult(Long count) {
            return count;
        }

        @Override
        public Long merge(Long a, Long b) {
            return a + b;
        }
    }

    static final class Emit extends ProcessWindowFunction<Long, Metric, String, TimeWindow> {
        private final Slices slices;
        private final LongCounter emitted = new LongCounter();

        Emit(Slices slices) {
            this.slices = slices;
        }

        @Override
        public void open(OpenContext context) {
            getRuntimeContext().addAccumulator("emitted", emitted);
        }

        @Override
        public void process(String key, Context context, Iterable<Long> counts, Collector<Metric> out) {
            long count = counts.iterator().next();
            if (slices.emitted(key, count)) {
                emitted.add(1);
                out.collect(new Metric(context.window().getStart(), key, count));
            }
        }
    }

    static final class CountLate extends ProcessFunction<String, String> {
        private final LongCounter late = new LongCounter();

        @Override
        public void open(OpenContext context) {
            getRuntimeContext().addAccumulator("window_late", late);
        }

        @Override
        public void processElement(String key, Context context, Collector<String> out) {
            late.add(1);
        }
    }

    static final class Serializer implements KafkaRecordSerializationSchema<Metric> {
        private final String topic;
        private final MetricRecords records;

        Serializer(String topic, MetricRecords records) {
            this.topic = topic;
            this.records = records;
        }

        @Override
        public ProducerRecord<byte[], byte[]> serialize(Metric metric, KafkaSinkContext context, Long timestamp) {
            return new ProducerRecord<>(
                    topic,
                    records.key(metric.windowStart, metric.key),
                    records.value(metric.windowStart, metric.key, metric.count));
        }
    }

    public static void main(String[] argv) throws Exception {
        PeerArgs args = PeerArgs.parse(argv);
        int parallelism = Integer.parseInt(args.option("parallelism", "1"));
        Slices slices = Slices.parse(args.slicesText);

        Configuration conf = new Configuration();
        // Records pass between chained operators without a copy.
        conf.set(PipelineOptions.OBJECT_REUSE, true);
        StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(parallelism, conf);
        // Streaming semantics on a bounded input: watermarks, and late data as a stream sees it.
        env.setRuntimeMode(RuntimeExecutionMode.STREAMING);

        KafkaSource<Read> source = KafkaSource.<Read>builder()
                .setBootstrapServers(args.brokers)
                .setTopics(args.inputTopic)
                .setGroupId("bench-flink-" + UUID.randomUUID())
                .setStartingOffsets(OffsetsInitializer.earliest())
                .setBounded(OffsetsInitializer.latest())
                .setDeserializer(new Deserializer())
                .setProperty("commit.offsets.on.checkpoint", "false")
                .build();
        WatermarkStrategy<Read> watermarks = WatermarkStrategy.<Read>forBoundedOutOfOrderness(
                        Duration.ofMillis(args.latenessMillis))
                // Rejects carry no event time and must not move a watermark.
                .withTimestampAssigner((read, kafkaTime) -> read.event == null ? Long.MIN_VALUE : read.event.windowMillis());

        DataStream<String> keys = env.fromSource(source, watermarks, "login-events")
                .process(new LatenessRule(slices, args.windowMillis, args.latenessMillis))
                .name("lateness-rule");
        SingleOutputStreamOperator<Metric> metrics = keys.keyBy(key -> key, Types.STRING)
                .window(TumblingEventTimeWindows.of(Duration.ofMillis(args.windowMillis)))
                .sideOutputLateData(WINDOW_LATE)
                .aggregate(new Count(), new Emit(slices))
                .name("count");
        metrics.getSideOutput(WINDOW_LATE).process(new CountLate()).sinkTo(new DiscardingSink<>());

        Properties producer = new Properties();
        // The producer settings loginflow's sink uses (bench/peers/common.py output_producer).
        producer.setProperty("enable.idempotence", "true");
        producer.setProperty("linger.ms", "50");
        producer.setProperty("compression.type", "lz4");
        metrics.sinkTo(KafkaSink.<Metric>builder()
                        .setBootstrapServers(args.brokers)
                        .setKafkaProducerConfig(producer)
                        .setDeliveryGuarantee(DeliveryGuarantee.AT_LEAST_ONCE)
                        .setRecordSerializer(new Serializer(args.outputTopic, new MetricRecords(slices, args.windowMillis)))
                        .build())
                .name("login-metrics");

        JobExecutionResult result = env.execute("loginflow-flink-p" + parallelism);
        double lastOutput = PeerArgs.now();
        Map<String, Object> counters = new HashMap<>();
        counters.put("consumed", result.getAccumulatorResult("consumed"));
        counters.put("rejected", result.getAccumulatorResult("rejected"));
        long late = result.<Long>getAccumulatorResult("late");
        Long windowLate = result.getAccumulatorResult("window_late");
        counters.put("late_dropped", late + (windowLate == null ? 0 : windowLate));
        counters.put("window_late_dropped", windowLate == null ? 0 : windowLate);
        counters.put("emitted", result.getAccumulatorResult("emitted"));
        counters.put("parallelism", parallelism);
        Double first = result.getAccumulatorResult("first_message");
        args.writeResults(first == null ? 0 : first, lastOutput, counters);
    }
}
