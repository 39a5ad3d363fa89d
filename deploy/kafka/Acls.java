// Adds ACLs in one Admin request; run by cluster.sh as a single-file program
// (`java -cp <kafka jars> Acls.java <admin.properties> <bootstrap>`), reading one ACL per
// line on stdin: PRINCIPAL OPERATION RESOURCE_TYPE NAME PATTERN_TYPE, e.g.
//   User:agency WRITE TOPIC loa.alerts.inbound LITERAL
// One JVM instead of one kafka-acls run per ACL, and no kafka-tools jar needed.

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class Acls {
  public static void main(String[] args) throws Exception {
    Properties props = new Properties();
    try (FileInputStream in = new FileInputStream(args[0])) {
      props.load(in);
    }
    props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
    List<AclBinding> acls = new ArrayList<>();
    BufferedReader lines = new BufferedReader(new InputStreamReader(System.in));
    for (String line; (line = lines.readLine()) != null; ) {
      String[] f = line.trim().split("\\s+");
      if (f.length != 5) {
        continue;
      }
      acls.add(
          new AclBinding(
              new ResourcePattern(
                  ResourceType.valueOf(f[2]), f[3], PatternType.valueOf(f[4])),
              new AccessControlEntry(
                  f[0], "*", AclOperation.valueOf(f[1]), AclPermissionType.ALLOW)));
    }
    try (Admin admin = Admin.create(props)) {
      admin.createAcls(acls).all().get();
    }
    System.out.println(acls.size());
  }
}
