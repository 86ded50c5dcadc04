package loginflow.bench;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;

/** login-metrics records shaped exactly like loginflow's (bench/peers/common.py metric_record). */
public final class MetricRecords implements Serializable {
    private static final long serialVersionUID = 1L;
    private static final JsonFactory JSON = new JsonFactory();
    private static final DateTimeFormatter ISO =
            DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss'Z'").withZone(ZoneOffset.UTC);

    private final Slices slices;
    private final long windowMillis;

    public MetricRecords(Slices slices, long windowMillis) {
        this.slices = slices;
        this.windowMillis = windowMillis;
    }

    /** Kafka key: ``["<window_start>", "<slice>", value, ...]``. */
    public byte[] key(long windowStartMillis, String key) {
        String[] values = values(key);
        return write(json -> {
            json.writeStartArray();
            json.writeString(iso(windowStartMillis));
            json.writeString(slices.names[slices.sliceOf(key)]);
            for (String value : values) {
                json.writeString(value);
            }
            json.writeEndArray();
        });
    }

    /** Kafka value: window_start, window_end, slice, key (field to value), count. */
    public byte[] value(long windowStartMillis, String key, long count) {
        int slice = slices.sliceOf(key);
        String[] values = values(key);
        return write(json -> {
            json.writeStartObject();
            json.writeStringField("window_start", iso(windowStartMillis));
            json.writeStringField("window_end", iso(windowStartMillis + windowMillis));
            json.writeStringField("slice", slices.names[slice]);
            json.writeObjectFieldStart("key");
            int[] fields = slices.fieldIndexes[slice];
            for (int i = 0; i < fields.length; i++) {
                json.writeStringField(Contract.FIELDS[fields[i]], values[i]);
            }
            json.writeEndObject();
            json.writeNumberField("count", count);
            json.writeEndObject();
        });
    }

    private static String[] values(String key) {
        String[] parts = key.split(String.valueOf(Slices.SEP), -1);
        String[] values = new String[parts.length - 1];
        System.arraycopy(parts, 1, values, 0, values.length);
        return values;
    }

    private static String iso(long millis) {
        return ISO.format(Instant.ofEpochMilli(millis));
    }

    private interface Body {
        void write(JsonGenerator json) throws IOException;
    }

    private static byte[] write(Body body) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(160);
        try (JsonGenerator json = JSON.createGenerator(out)) {
            body.write(json);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }
}
