package loa.exact;

import java.util.Locale;

/** A minimal JSON writer for the result (no dependency: the result is small and flat). */
final class Json {
  private final StringBuilder sb = new StringBuilder(4096);
  /** no comma before the next value: just after an opening bracket or a key */
  private boolean fresh = true;

  Json open(char bracket) {
    comma();
    sb.append(bracket);
    fresh = true;
    return this;
  }

  Json close(char bracket) {
    sb.append(bracket);
    fresh = false;
    return this;
  }

  Json key(String name) {
    comma();
    quote(name);
    sb.append(':');
    fresh = true;
    return this;
  }

  Json str(String s) {
    comma();
    quote(s);
    fresh = false;
    return this;
  }

  Json num(long v) {
    comma();
    sb.append(v);
    fresh = false;
    return this;
  }

  Json num(double v) {
    comma();
    sb.append(Double.isFinite(v) ? String.format(Locale.ROOT, "%.6f", v) : "null");
    fresh = false;
    return this;
  }

  Json bool(boolean v) {
    comma();
    sb.append(v);
    fresh = false;
    return this;
  }

  String text() {
    return sb.toString();
  }

  private void comma() {
    if (!fresh) {
      sb.append(',');
    }
  }

  private void quote(String s) {
    sb.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> sb.append("\\\"");
        case '\\' -> sb.append("\\\\");
        case '\n' -> sb.append("\\n");
        case '\r' -> sb.append("\\r");
        case '\t' -> sb.append("\\t");
        default -> {
          if (c < 0x20) {
            sb.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
          } else {
            sb.append(c);
          }
        }
      }
    }
    sb.append('"');
  }
}
