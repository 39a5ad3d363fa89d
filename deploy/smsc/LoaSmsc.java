// A small SMSC for Loa's tests, built on jSMPP (org.jsmpp:jsmpp, Maven Central): a real SMPP
// 3.4 server stack (bind, submit_sm/submit_sm_resp, enquire_link, unbind, deliver_sm), with
// Loa's test behaviour around it. Built and run by deploy/smsc/smsc.sh.
//
// Usage: java -cp <jars> LoaSmsc <port> <system_id> <password> <log file>
// Prints "LISTENING <port>" on stdout once bound (port 0 picks a free one).
// Commands, one per line on stdin:
//   throttle N   answer the next N submit_sm with ESME_RTHROTTLED (0x58)
//   qfull N      answer the next N submit_sm with ESME_RMSGQFUL (0x14)
//   drop         close every bound session's TCP connection at once (no unbind)
//   receipts on  send a delivery receipt (deliver_sm, esm_class 0x04) for every submit_sm
//                that asks for one (registered_delivery bit 0); "receipts off" stops it
// A destination that is not 3-20 digits (an optional leading +) is ESME_RINVDSTADR (0x0B).
// The log file gets one JSON object per line: bind, bind_rejected, submit_sm (accepted: its
// message id, addresses, data_coding, esm_class and short_message in hex), throttled, qfull,
// invalid_destination, drop, receipt. Tests count deliveries from it, outside Loa.
import java.io.BufferedReader;
import java.io.FileWriter;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.jsmpp.bean.BroadcastSm;
import org.jsmpp.bean.CancelBroadcastSm;
import org.jsmpp.bean.CancelSm;
import org.jsmpp.bean.DataSm;
import org.jsmpp.bean.ESMClass;
import org.jsmpp.bean.GeneralDataCoding;
import org.jsmpp.bean.NumberingPlanIndicator;
import org.jsmpp.bean.QueryBroadcastSm;
import org.jsmpp.bean.QuerySm;
import org.jsmpp.bean.RegisteredDelivery;
import org.jsmpp.bean.ReplaceSm;
import org.jsmpp.bean.SubmitMulti;
import org.jsmpp.bean.SubmitSm;
import org.jsmpp.bean.TypeOfNumber;
import org.jsmpp.extra.ProcessRequestException;
import org.jsmpp.session.BindRequest;
import org.jsmpp.session.BroadcastSmResult;
import org.jsmpp.session.DataSmResult;
import org.jsmpp.session.QueryBroadcastSmResult;
import org.jsmpp.session.QuerySmResult;
import org.jsmpp.session.SMPPServerSession;
import org.jsmpp.session.SMPPServerSessionListener;
import org.jsmpp.session.ServerMessageReceiverListener;
import org.jsmpp.session.Session;
import org.jsmpp.session.SubmitMultiResult;
import org.jsmpp.session.SubmitSmResult;
import org.jsmpp.util.MessageId;

public final class LoaSmsc implements ServerMessageReceiverListener {
  static final int ESME_RINVDSTADR = 0x0B;
  static final int ESME_RINVPASWD = 0x0E;
  static final int ESME_RMSGQFUL = 0x14;
  static final int ESME_RTHROTTLED = 0x58;

  private final String systemId;
  private final String password;
  private final PrintWriter log;
  private final Set<SMPPServerSession> sessions = ConcurrentHashMap.newKeySet();
  private final AtomicInteger throttle = new AtomicInteger();
  private final AtomicInteger qfull = new AtomicInteger();
  private final AtomicBoolean receipts = new AtomicBoolean();
  private final AtomicLong nextId = new AtomicLong(1);
  private final ExecutorService receiptSender = Executors.newSingleThreadExecutor();

  LoaSmsc(String systemId, String password, PrintWriter log) {
    this.systemId = systemId;
    this.password = password;
    this.log = log;
  }

  private synchronized void log(String json) {
    log.println(json);
    log.flush();
  }

  private static String quote(String s) {
    StringBuilder b = new StringBuilder("\"");
    for (char c : (s == null ? "" : s).toCharArray()) {
      if (c == '"' || c == '\\') b.append('\\').append(c);
      else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
      else b.append(c);
    }
    return b.append('"').toString();
  }

  private static String hex(byte[] bytes) {
    StringBuilder b = new StringBuilder();
    for (byte x : bytes == null ? new byte[0] : bytes) b.append(String.format("%02x", x & 0xff));
    return b.toString();
  }

  @Override
  public SubmitSmResult onAcceptSubmitSm(SubmitSm sm, SMPPServerSession session)
      throws ProcessRequestException {
    String dest = sm.getDestAddress();
    if (throttle.getAndUpdate(n -> n > 0 ? n - 1 : 0) > 0) {
      log("{\"event\":\"throttled\",\"dest\":" + quote(dest) + "}");
      throw new ProcessRequestException("throttled", ESME_RTHROTTLED);
    }
    if (qfull.getAndUpdate(n -> n > 0 ? n - 1 : 0) > 0) {
      log("{\"event\":\"qfull\",\"dest\":" + quote(dest) + "}");
      throw new ProcessRequestException("message queue full", ESME_RMSGQFUL);
    }
    if (dest == null || !dest.matches("\\+?[0-9]{3,20}")) {
      log("{\"event\":\"invalid_destination\",\"dest\":" + quote(dest) + "}");
      throw new ProcessRequestException("invalid destination", ESME_RINVDSTADR);
    }
    String id = Long.toHexString(nextId.getAndIncrement());
    log(
        "{\"event\":\"submit_sm\",\"message_id\":" + quote(id)
            + ",\"source\":" + quote(sm.getSourceAddr())
            + ",\"dest\":" + quote(dest)
            + ",\"data_coding\":" + (sm.getDataCoding() & 0xff)
            + ",\"esm_class\":" + (sm.getEsmClass() & 0xff)
            + ",\"registered_delivery\":" + (sm.getRegisteredDelivery() & 0xff)
            + ",\"short_message\":" + quote(hex(sm.getShortMessage())) + "}");
    if (receipts.get() && (sm.getRegisteredDelivery() & 0x01) != 0) {
      receiptSender.submit(() -> sendReceipt(session, sm, id));
    }
    try {
      return new SubmitSmResult(new MessageId(id), new org.jsmpp.bean.OptionalParameter[0]);
    } catch (org.jsmpp.PDUStringException e) {
      throw new ProcessRequestException(e.getMessage(), 0x08);
    }
  }

  private void sendReceipt(SMPPServerSession session, SubmitSm sm, String id) {
    String text = "id:" + id + " sub:001 dlvrd:001 submit date:0000000000 done date:0000000000"
        + " stat:DELIVRD err:000 text:";
    try {
      session.deliverShortMessage("", TypeOfNumber.UNKNOWN, NumberingPlanIndicator.UNKNOWN,
          sm.getDestAddress(), TypeOfNumber.UNKNOWN, NumberingPlanIndicator.UNKNOWN,
          sm.getSourceAddr(), new ESMClass(0x04), (byte) 0, (byte) 0, new RegisteredDelivery(0),
          GeneralDataCoding.DEFAULT, text.getBytes(StandardCharsets.US_ASCII));
      log("{\"event\":\"receipt\",\"message_id\":" + quote(id) + "}");
    } catch (Exception e) {
      log("{\"event\":\"receipt_failed\",\"message_id\":" + quote(id) + ",\"error\":"
          + quote(e.toString()) + "}");
    }
  }

  @Override
  public SubmitMultiResult onAcceptSubmitMulti(SubmitMulti sm, SMPPServerSession s)
      throws ProcessRequestException {
    throw new ProcessRequestException("not supported", 0x03);
  }

  @Override
  public QuerySmResult onAcceptQuerySm(QuerySm q, SMPPServerSession s)
      throws ProcessRequestException {
    throw new ProcessRequestException("not supported", 0x03);
  }

  @Override
  public void onAcceptReplaceSm(ReplaceSm r, SMPPServerSession s) throws ProcessRequestException {
    throw new ProcessRequestException("not supported", 0x03);
  }

  @Override
  public void onAcceptCancelSm(CancelSm c, SMPPServerSession s) throws ProcessRequestException {
    throw new ProcessRequestException("not supported", 0x03);
  }

  @Override
  public BroadcastSmResult onAcceptBroadcastSm(BroadcastSm b, SMPPServerSession s)
      throws ProcessRequestException {
    throw new ProcessRequestException("not supported", 0x03);
  }

  @Override
  public void onAcceptCancelBroadcastSm(CancelBroadcastSm c, SMPPServerSession s)
      throws ProcessRequestException {
    throw new ProcessRequestException("not supported", 0x03);
  }

  @Override
  public QueryBroadcastSmResult onAcceptQueryBroadcastSm(QueryBroadcastSm q, SMPPServerSession s)
      throws ProcessRequestException {
    throw new ProcessRequestException("not supported", 0x03);
  }

  @Override
  public DataSmResult onAcceptDataSm(DataSm d, Session s) throws ProcessRequestException {
    throw new ProcessRequestException("not supported", 0x03);
  }

  private void serve(SMPPServerSession session) {
    try {
      BindRequest bind = session.waitForBind(5000);
      if (!systemId.equals(bind.getSystemId()) || !password.equals(bind.getPassword())) {
        log("{\"event\":\"bind_rejected\",\"system_id\":" + quote(bind.getSystemId()) + "}");
        bind.reject(ESME_RINVPASWD);
        session.close();
        return;
      }
      bind.accept(systemId);
      sessions.add(session);
      log("{\"event\":\"bind\",\"system_id\":" + quote(bind.getSystemId()) + ",\"type\":"
          + quote(bind.getBindType().name()) + "}");
    } catch (Exception e) {
      session.close();
    }
  }

  private void drop() {
    log("{\"event\":\"drop\",\"sessions\":" + sessions.size() + "}");
    for (SMPPServerSession s : sessions) {
      s.close();
    }
    sessions.clear();
  }

  private void commands() {
    try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in))) {
      String line;
      while ((line = in.readLine()) != null) {
        String[] w = line.trim().split("\\s+");
        switch (w[0]) {
          case "throttle" -> throttle.set(Integer.parseInt(w[1]));
          case "qfull" -> qfull.set(Integer.parseInt(w[1]));
          case "drop" -> drop();
          case "receipts" -> receipts.set("on".equals(w[1]));
          default -> { continue; }
        }
        System.out.println("OK " + line.trim());
        System.out.flush();
      }
    } catch (IOException e) {
      // stdin closed: keep serving until killed
    }
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 4) {
      System.err.println("usage: LoaSmsc <port> <system_id> <password> <log file>");
      System.exit(2);
    }
    PrintWriter log = new PrintWriter(new FileWriter(args[3], StandardCharsets.UTF_8, true));
    LoaSmsc smsc = new LoaSmsc(args[1], args[2], log);
    ExecutorService binds = Executors.newCachedThreadPool();
    try (SMPPServerSessionListener listener =
        new SMPPServerSessionListener(Integer.parseInt(args[0]))) {
      listener.setMessageReceiverListener(smsc);
      listener.setPduProcessorDegree(8);
      listener.setQueueCapacity(10000);
      System.out.println("LISTENING " + listener.getPort());
      System.out.flush();
      Thread control = new Thread(smsc::commands, "commands");
      control.setDaemon(true);
      control.start();
      while (true) {
        SMPPServerSession session = listener.accept();
        binds.submit(() -> smsc.serve(session));
      }
    }
  }
}
