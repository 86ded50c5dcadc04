package loginflow.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.IOException;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The command line every bench peer takes (bench/peers/common.py parse_args), and the results
 * file it writes for the harness: first_message, last_output and counters.
 */
public final class PeerArgs {
    public final String brokers;
    public final String inputTopic;
    public final String outputTopic;
    public final Path results;
    public final long windowMillis;
    public final long latenessMillis;
    public final String slicesText;
    private final Map<String, String> extra;

    private PeerArgs(Map<String, String> options) {
        brokers = required(options, "brokers");
        inputTopic = required(options, "input-topic");
        outputTopic = required(options, "output-topic");
        results = Path.of(required(options, "results"));
        windowMillis = Long.parseLong(options.getOrDefault("window", "60")) * 1000;
        // A whole number of milliseconds keeps the lateness rule exact (PartitionFront).
        latenessMillis = Math.round(Double.parseDouble(options.getOrDefault("lateness", "10")) * 1000);
        slicesText = required(options, "slices");
        extra = options;
    }

    /** `--name value` pairs. */
    public static PeerArgs parse(String[] argv) {
        Map<String, String> options = new HashMap<>();
        for (int i = 0; i + 1 < argv.length; i += 2) {
            if (!argv[i].startsWith("--")) {
                throw new IllegalArgumentException("expected --option value, got " + argv[i]);
            }
            options.put(argv[i].substring(2), argv[i + 1]);
        }
        return new PeerArgs(options);
    }

    public String option(String name, String fallback) {
        return extra.getOrDefault(name, fallback);
    }

    private static String required(Map<String, String> options, String name) {
        String value = options.get(name);
        if (value == null) {
            throw new IllegalArgumentException("--" + name + " is required");
        }
        return value;
    }

    /** Write the results file; `firstMessage` and `lastOutput` are epoch seconds. */
    public void writeResults(double firstMessage, double lastOutput, Map<String, Object> counters) throws IOException {
        Map<String, Object> payload = new LinkedHashMap<>();
        payload.put("first_message", firstMessage > 0 ? firstMessage : null);
        payload.put("last_output", lastOutput);
        payload.putAll(counters);
        new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValue(results.toFile(), payload);
    }

    public static double now() {
        return System.currentTimeMillis() / 1000.0;
    }
}
