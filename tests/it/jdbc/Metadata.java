// What a JDBC tool reads of sockql through pgjdbc's DatabaseMetaData:
// the tables (with their remarks), the columns of one table in order with
// their remarks, and a PreparedStatement with a parameter. One line each,
// tab-separated, so tests/it/pg_psql.rs compares them with the command
// line's catalog. Arguments: URL PASSWORD TABLE PORT.
import java.sql.*;

public class Metadata {
    public static void main(String[] a) throws Exception {
        String url = a[0], table = a[2];
        int port = Integer.parseInt(a[3]);
        try (Connection c = DriverManager.getConnection(url, "ops", a[1])) {
            DatabaseMetaData md = c.getMetaData();
            try (ResultSet rs = md.getTables(null, null, "%", new String[]{"TABLE"})) {
                while (rs.next()) {
                    System.out.println("table\t" + rs.getString("TABLE_SCHEM") + "\t" + rs.getString("TABLE_NAME") + "\t" + rs.getString("REMARKS"));
                }
            }
            try (ResultSet rs = md.getColumns(null, "public", table, "%")) {
                while (rs.next()) {
                    System.out.println("column\t" + rs.getInt("ORDINAL_POSITION") + "\t" + rs.getString("COLUMN_NAME") + "\t" + rs.getString("REMARKS"));
                }
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT protocol, state, local_port FROM sockets WHERE local_port = ? AND state = ? ORDER BY protocol")) {
                ps.setInt(1, port);
                ps.setString(2, "LISTEN");
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        System.out.println("prepared\t" + rs.getString(1) + "\t" + rs.getString(2) + "\t" + rs.getInt(3));
                    }
                }
            }
        }
    }
}
