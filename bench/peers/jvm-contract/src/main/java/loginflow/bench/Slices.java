package loginflow.bench;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The slices to count, parsed from SLICES text (``user_id+ip:2,app_version+locale:1``), and the
 * string key of one event in one slice: the slice's index and its field values, joined by \u001f.
 */
public final class Slices implements Serializable {
    private static final long serialVersionUID = 1L;
    static final char SEP = '\u001f';

    final String[] names;
    final int[][] fieldIndexes;
    final long[] minCounts;

    private Slices(String[] names, int[][] fieldIndexes, long[] minCounts) {
        this.names = names;
        this.fieldIndexes = fieldIndexes;
        this.minCounts = minCounts;
    }

    /** Parse the harness's --slices (already checked by operators.runtime.settings.parse_slices). */
    public static Slices parse(String text) {
        List<String> names = new ArrayList<>();
        List<int[]> indexes = new ArrayList<>();
        List<Long> minimums = new ArrayList<>();
        List<String> known = Arrays.asList(Contract.FIELDS);
        for (String item : text.split(",")) {
            if (item.isBlank()) {
                continue;
            }
            String[] parts = item.trim().split(":");
            String[] fields = parts[0].trim().split("\\+");
            int[] positions = new int[fields.length];
            for (int i = 0; i < fields.length; i++) {
                positions[i] = known.indexOf(fields[i].trim());
                if (positions[i] < 0) {
                    throw new IllegalArgumentException("unknown slice field " + fields[i]);
                }
            }
            names.add(String.join("+", fields));
            indexes.add(positions);
            minimums.add(Long.parseLong(parts[1].trim()));
        }
        return new Slices(
                names.toArray(String[]::new),
                indexes.toArray(int[][]::new),
                minimums.stream().mapToLong(Long::longValue).toArray());
    }

    public int size() {
        return names.length;
    }

    /** The key of `event` in slice `slice`. */
    public String key(int slice, LoginEvent event) {
        StringBuilder key = new StringBuilder(64).append(slice);
        for (int index : fieldIndexes[slice]) {
            key.append(SEP).append(event.fields()[index]);
        }
        return key.toString();
    }

    /** Whether a count of `key` reaches its slice's minimum. */
    public boolean emitted(String key, long count) {
        return count >= minCounts[sliceOf(key)];
    }

    int sliceOf(String key) {
        return Integer.parseInt(key.substring(0, key.indexOf(SEP)));
    }
}
