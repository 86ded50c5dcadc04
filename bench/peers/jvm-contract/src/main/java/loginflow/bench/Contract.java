package loginflow.bench;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectReader;
import java.io.IOException;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.math.RoundingMode;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.regex.Pattern;

/**
 * loginflow's input contract (docs/contracts.md, operators/pure/events.py): one message value
 * becomes a {@link LoginEvent} or is rejected (null). The peers only count rejects, so the
 * reason codes are not kept; which messages are rejected is what matters, and that follows the
 * contract rule by rule.
 */
public final class Contract {
    /** The fields a slice may combine, in event order (operators/pure/slices.py FIELDS). */
    public static final String[] FIELDS = {"user_id", "app_version", "device_type", "ip", "locale", "device_id"};

    static final String UNKNOWN = "unknown";
    static final int MAX_FIELD_BYTES = 1024;
    // 2000-01-01 and 2100-01-01 UTC: the contract's range, end excluded.
    static final BigDecimal MIN_TIME = BigDecimal.valueOf(946_684_800L);
    static final BigDecimal MAX_TIME = BigDecimal.valueOf(4_102_444_800L);
    private static final Pattern DIGITS = Pattern.compile("[0-9]+(?:\\.[0-9]+)?");

    // JSON as its grammar says: numbers of any length, nothing after the value, the last of
    // duplicated keys wins (Jackson's default for trees), no NaN or comments (also defaults).
    private static final ObjectReader READER = new ObjectMapper(
                    JsonFactory.builder()
                            .streamReadConstraints(StreamReadConstraints.builder()
                                    .maxNumberLength(Integer.MAX_VALUE)
                                    .maxStringLength(Integer.MAX_VALUE)
                                    .build())
                            .build())
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .reader();

    private Contract() {}

    /** The validated event, or null when the contract rejects the value. */
    public static LoginEvent parse(byte[] value) {
        if (value == null || value.length == 0) {
            return null;
        }
        JsonNode doc;
        try {
            doc = READER.readTree(strictUtf8(value));
        } catch (IOException e) {
            return null;
        }
        if (doc == null || !doc.isObject()) {
            return null;
        }
        String[] fields = new String[FIELDS.length];
        JsonNode user = doc.get("user_id");
        if (user == null || !user.isTextual() || user.textValue().isEmpty() || !fits(user.textValue())) {
            return null;
        }
        fields[0] = user.textValue();
        LoginEvent event = withTime(doc.get("timestamp"), fields);
        if (event == null) {
            return null;
        }
        for (int i = 1; i < FIELDS.length; i++) {
            JsonNode raw = doc.get(FIELDS[i]);
            if (raw == null || raw.isNull() || (raw.isTextual() && raw.textValue().isEmpty())) {
                fields[i] = UNKNOWN;
            } else if (raw.isTextual() && fits(raw.textValue())) {
                fields[i] = raw.textValue();
            } else {
                return null;
            }
        }
        return event;
    }

    private static String strictUtf8(byte[] value) throws CharacterCodingException {
        // Jackson would guess UTF-16/32 from leading zero bytes; the contract says UTF-8 only.
        CharsetDecoder decoder = StandardCharsets.UTF_8
                .newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        return decoder.decode(ByteBuffer.wrap(value)).toString();
    }

    /** A string with a UTF-8 form (no lone surrogate) of at most MAX_FIELD_BYTES bytes. */
    private static boolean fits(String text) {
        int bytes = 0;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (Character.isHighSurrogate(c) && i + 1 < text.length() && Character.isLowSurrogate(text.charAt(i + 1))) {
                bytes += 4;
                i++;
            } else if (Character.isSurrogate(c)) {
                return false;
            } else {
                bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
            }
        }
        return bytes <= MAX_FIELD_BYTES;
    }

    /**
     * The event with its two instants, or null. A digit string is exact: its window follows its
     * digits, while its event time (what moves a partition's front) is the largest double not
     * above it, as in operators/pure/events.py.
     */
    private static LoginEvent withTime(JsonNode raw, String[] fields) {
        if (raw == null || raw.isNull() || raw.isBoolean()) {
            return null;
        }
        BigDecimal exact;
        double time;
        if (raw.isIntegralNumber()) {
            exact = new BigDecimal(raw.bigIntegerValue());
            time = exact.doubleValue();
        } else if (raw.isFloatingPointNumber()) {
            time = raw.doubleValue();
            if (!Double.isFinite(time)) {
                return null;
            }
            exact = new BigDecimal(time);
        } else if (raw.isTextual() && DIGITS.matcher(raw.textValue()).matches()) {
            exact = new BigDecimal(raw.textValue());
            time = exact.doubleValue();
            if (new BigDecimal(time).compareTo(exact) > 0) {
                time = Math.nextDown(time);
            }
        } else {
            return null;
        }
        if (exact.compareTo(MIN_TIME) < 0 || exact.compareTo(MAX_TIME) >= 0) {
            return null;
        }
        return new LoginEvent(floorMillis(exact), floorMillis(new BigDecimal(time)), fields);
    }

    private static long floorMillis(BigDecimal seconds) {
        BigInteger millis = seconds.movePointRight(3).setScale(0, RoundingMode.FLOOR).toBigIntegerExact();
        return millis.longValueExact();
    }
}
