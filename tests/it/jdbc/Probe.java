// What DBeaver's navigator asks through pgjdbc, the driver it uses:
// product, tables, columns, and a prepared statement with a parameter.
// Compiled and run by tests/it/pg.rs against sockql serve --pg.
import java.sql.*;
public class Probe {
    public static void main(String[] a) throws Exception {
        String url = a[0];
        try (Connection c = DriverManager.getConnection(url, "ops", a.length > 1 ? a[1] : "")) {
            DatabaseMetaData md = c.getMetaData();
            System.out.println("product " + md.getDatabaseProductName() + " " + md.getDatabaseProductVersion());
            try (ResultSet rs = md.getTables(null, "public", "%", new String[]{"TABLE"})) {
                int n = 0; while (rs.next()) { n++; System.out.println("table " + rs.getString("TABLE_NAME")); }
            }
            try (ResultSet rs = md.getColumns(null, "public", "sockets", "local_%")) {
                while (rs.next()) System.out.println("column " + rs.getString("COLUMN_NAME") + " " + rs.getString("TYPE_NAME"));
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT count(*) AS n FROM sockets WHERE state = ?")) {
                ps.setString(1, "LISTEN");
                try (ResultSet rs = ps.executeQuery()) { rs.next(); System.out.println("listen " + rs.getLong(1)); }
            }
        }
    }
}
