package loginflow.bench;

/**
 * A validated login.
 *
 * @param windowMillis the instant its digits spell, floored to milliseconds: picks its window
 * @param frontMillis its event time as a double, floored to milliseconds: moves its partition's front
 * @param fields user_id, app_version, device_type, ip, locale, device_id (Contract.FIELDS order)
 */
public record LoginEvent(long windowMillis, long frontMillis, String[] fields) {}
