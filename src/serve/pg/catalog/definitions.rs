//! The columns of every pg_catalog table and view sockql answers, as
//! PostgreSQL 16 defines them (what clients select and join on), written
//! `name:type` with `!` for NOT NULL. Types: `oid` and the reg* kinds are
//! int4 on the Arrow side with the kind in the field's metadata (sent as
//! that PostgreSQL type, see crates/output/src/pg_encode.rs); arrays (aclitem[], int2vector,
//! oidvector, text[]) are text, as clients only print or pattern-match
//! them. Which tables have rows is decided in `rows.rs`; the rest are
//! empty, as PostgreSQL's would be for objects sockql does not have
//! (indexes, constraints, triggers, policies, extensions, ...).

/// (table, columns)
pub const TABLES: &[(&str, &str)] = &[
    // Rows from the session's live catalog (relations.rs).
    ("pg_namespace", "oid:oid! nspname:text! nspowner:oid! nspacl:text options:text"),
    (
        "pg_class",
        "oid:oid! relname:text! relnamespace:regnamespace! reltype:regtype! reloftype:regtype relowner:int4! \
         relam:int4! relfilenode:int4! reltablespace:int4! relpages:int4! reltuples:float8! relallvisible:int4! \
         reltoastrelid:regclass! relhasindex:bool! relisshared:bool! relpersistence:text! relkind:text! \
         relnatts:int2! relchecks:int2! relhasrules:bool! relhastriggers:bool! relhassubclass:bool! \
         relrowsecurity:bool! relforcerowsecurity:bool! relispopulated:bool! relreplident:text! \
         relispartition:bool! relrewrite:regclass relfrozenxid:int4! relminmxid:int4! relpartbound:text",
    ),
    (
        "pg_attribute",
        "attrelid:regclass! attname:text! atttypid:regtype! attstattarget:int4! attlen:int2! attnum:int2! \
         attndims:int4! attcacheoff:int4! atttypmod:int4! attbyval:bool! attalign:text! attstorage:text! \
         attcompression:text attnotnull:bool! atthasdef:bool! atthasmissing:bool! attidentity:text! \
         attgenerated:text! attisdropped:bool! attislocal:bool! attinhcount:int4! attcollation:int4! \
         attacl:text attoptions:text attfdwoptions:text attmissingval:text",
    ),
    (
        "pg_database",
        "oid:oid! datname:text! datdba:int4! encoding:int4! datlocprovider:text! datcollate:text! datctype:text! \
         datistemplate:bool! datallowconn:bool! dathasloginevt:bool! datconnlimit:int4! datlastsysoid:int4! \
         datfrozenxid:int4! datminmxid:int4! dattablespace:int4! daticulocale:text datlocale:text daticurules:text \
         datcollversion:text datacl:int4[]",
    ),
    (
        "pg_tables",
        "schemaname:text! tablename:text! tableowner:text! tablespace:text hasindex:bool! hasrules:bool! \
         hastriggers:bool! rowsecurity:bool!",
    ),
    ("pg_views", "schemaname:text viewname:text viewowner:text definition:text"),
    (
        "pg_matviews",
        "schemaname:text matviewname:text matviewowner:text tablespace:text hasindexes:bool ispopulated:bool \
         definition:text",
    ),
    // Rows of their own (types.rs, roles.rs, settings in rows.rs).
    (
        "pg_type",
        "oid:oid! typname:text! typnamespace:oid! typowner:oid! typlen:int2! typbyval:bool! typtype:text! \
         typcategory:text! typispreferred:bool! typisdefined:bool! typdelim:text! typrelid:oid! typsubscript:text! \
         typelem:oid! typarray:oid! typinput:text! typoutput:text! typreceive:text! typsend:text! typmodin:text! \
         typmodout:text! typanalyze:text! typalign:text! typstorage:text! typnotnull:bool! typbasetype:oid! \
         typtypmod:int4! typndims:int4! typcollation:oid! typdefaultbin:text typdefault:text typacl:text",
    ),
    (
        "pg_roles",
        "rolname:text rolsuper:bool rolinherit:bool rolcreaterole:bool rolcreatedb:bool rolcanlogin:bool \
         rolreplication:bool rolconnlimit:int4 rolpassword:text rolvaliduntil:timestamptz rolbypassrls:bool \
         rolconfig:text[] oid:oid",
    ),
    (
        "pg_settings",
        "name:text setting:text unit:text category:text short_desc:text extra_desc:text context:text vartype:text \
         source:text min_val:text max_val:text enumvals:text boot_val:text reset_val:text sourcefile:text \
         sourceline:int4 pending_restart:bool",
    ),
    (
        "pg_stat_user_tables",
        "relid:oid! schemaname:text! relname:text! seq_scan:int8! seq_tup_read:int8! idx_scan:int8! \
         idx_tup_fetch:int8! n_tup_ins:int8! n_tup_upd:int8! n_tup_del:int8! n_tup_hot_upd:int8! n_live_tup:int8! \
         n_dead_tup:int8! vacuum_count:int8! autovacuum_count:int8! analyze_count:int8! autoanalyze_count:int8!",
    ),
    ("pg_stat_gssapi", "pid:int4 gss_authenticated:bool principal:text encrypted:bool credentials_delegated:bool"),
    (
        "pg_replication_slots",
        "slot_name:text plugin:text slot_type:text datoid:oid database:text temporary:bool active:bool \
         active_pid:int4 xmin:text catalog_xmin:text restart_lsn:text confirmed_flush_lsn:text",
    ),
    // Empty: sockql has none of these objects.
    (
        "pg_aggregate",
        "aggfnoid:text! aggkind:text! aggnumdirectargs:int2! aggtransfn:text! aggfinalfn:text! \
         aggcombinefn:text! aggserialfn:text! aggdeserialfn:text! aggmtransfn:text! aggminvtransfn:text! \
         aggmfinalfn:text! aggfinalextra:bool! aggmfinalextra:bool! aggfinalmodify:text! \
         aggmfinalmodify:text! aggsortop:oid! aggtranstype:oid! aggtransspace:int4! aggmtranstype:oid! \
         aggmtransspace:int4! agginitval:text aggminitval:text",
    ),
    ("pg_am", "oid:oid! amname:text! amhandler:text! amtype:text!"),
    (
        "pg_amop",
        "oid:oid! amopfamily:oid! amoplefttype:oid! amoprighttype:oid! amopstrategy:int2! amoppurpose:text! \
         amopopr:oid! amopmethod:oid! amopsortfamily:oid!",
    ),
    ("pg_amproc", "oid:oid! amprocfamily:oid! amproclefttype:oid! amprocrighttype:oid! amprocnum:int2! amproc:text!"),
    ("pg_attrdef", "oid:oid! adrelid:oid! adnum:int2! adbin:text!"),
    (
        "pg_auth_members",
        "oid:oid! roleid:oid! member:oid! grantor:oid! admin_option:bool! inherit_option:bool! \
         set_option:bool!",
    ),
    (
        "pg_authid",
        "oid:oid! rolname:text! rolsuper:bool! rolinherit:bool! rolcreaterole:bool! rolcreatedb:bool! \
         rolcanlogin:bool! rolreplication:bool! rolbypassrls:bool! rolconnlimit:int4! rolpassword:text \
         rolvaliduntil:timestamptz",
    ),
    ("pg_cast", "oid:oid! castsource:oid! casttarget:oid! castfunc:oid! castcontext:text! castmethod:text!"),
    (
        "pg_collation",
        "oid:oid! collname:text! collnamespace:oid! collowner:oid! collprovider:text! \
         collisdeterministic:bool! collencoding:int4! collcollate:text collctype:text colllocale:text \
         collicurules:text collversion:text",
    ),
    (
        "pg_constraint",
        "oid:oid! conname:text! connamespace:oid! contype:text! condeferrable:bool! condeferred:bool! \
         convalidated:bool! conrelid:oid! contypid:oid! conindid:oid! conparentid:oid! confrelid:oid! \
         confupdtype:text! confdeltype:text! confmatchtype:text! conislocal:bool! coninhcount:int2! \
         connoinherit:bool! conkey:text confkey:text conpfeqop:text conppeqop:text conffeqop:text \
         confdelsetcols:text conexclop:text conbin:text",
    ),
    (
        "pg_conversion",
        "oid:oid! conname:text! connamespace:oid! conowner:oid! conforencoding:int4! contoencoding:int4! \
         conproc:text! condefault:bool!",
    ),
    ("pg_db_role_setting", "setdatabase:oid! setrole:oid! setconfig:text"),
    ("pg_default_acl", "oid:oid! defaclrole:oid! defaclnamespace:oid! defaclobjtype:text! defaclacl:text!"),
    (
        "pg_depend",
        "classid:oid! objid:oid! objsubid:int4! refclassid:oid! refobjid:oid! refobjsubid:int4! deptype:text!",
    ),
    ("pg_description", "objoid:oid! classoid:oid! objsubid:int4! description:text!"),
    ("pg_enum", "oid:oid! enumtypid:oid! enumsortorder:float4! enumlabel:text!"),
    (
        "pg_event_trigger",
        "oid:oid! evtname:text! evtevent:text! evtowner:oid! evtfoid:oid! evtenabled:text! evttags:text",
    ),
    (
        "pg_extension",
        "oid:oid! extname:text! extowner:oid! extnamespace:oid! extrelocatable:bool! extversion:text! \
         extconfig:text extcondition:text",
    ),
    (
        "pg_foreign_data_wrapper",
        "oid:oid! fdwname:text! fdwowner:oid! fdwhandler:oid! fdwvalidator:oid! fdwacl:text fdwoptions:text",
    ),
    (
        "pg_foreign_server",
        "oid:oid! srvname:text! srvowner:oid! srvfdw:oid! srvtype:text srvversion:text srvacl:text \
         srvoptions:text",
    ),
    ("pg_foreign_table", "ftrelid:oid! ftserver:oid! ftoptions:text"),
    (
        "pg_index",
        "indexrelid:oid! indrelid:oid! indnatts:int2! indnkeyatts:int2! indisunique:bool! \
         indnullsnotdistinct:bool! indisprimary:bool! indisexclusion:bool! indimmediate:bool! \
         indisclustered:bool! indisvalid:bool! indcheckxmin:bool! indisready:bool! indislive:bool! \
         indisreplident:bool! indkey:text! indcollation:text! indclass:text! indoption:text! indexprs:text \
         indpred:text",
    ),
    ("pg_inherits", "inhrelid:oid! inhparent:oid! inhseqno:int4! inhdetachpending:bool!"),
    ("pg_init_privs", "objoid:oid! classoid:oid! objsubid:int4! privtype:text! initprivs:text!"),
    (
        "pg_language",
        "oid:oid! lanname:text! lanowner:oid! lanispl:bool! lanpltrusted:bool! lanplcallfoid:oid! \
         laninline:oid! lanvalidator:oid! lanacl:text",
    ),
    ("pg_largeobject", "loid:oid! pageno:int4! data:bytea!"),
    ("pg_largeobject_metadata", "oid:oid! lomowner:oid! lomacl:text"),
    (
        "pg_opclass",
        "oid:oid! opcmethod:oid! opcname:text! opcnamespace:oid! opcowner:oid! opcfamily:oid! opcintype:oid! \
         opcdefault:bool! opckeytype:oid!",
    ),
    (
        "pg_operator",
        "oid:oid! oprname:text! oprnamespace:oid! oprowner:oid! oprkind:text! oprcanmerge:bool! \
         oprcanhash:bool! oprleft:oid! oprright:oid! oprresult:oid! oprcom:oid! oprnegate:oid! oprcode:text! \
         oprrest:text! oprjoin:text!",
    ),
    ("pg_opfamily", "oid:oid! opfmethod:oid! opfname:text! opfnamespace:oid! opfowner:oid!"),
    ("pg_parameter_acl", "oid:oid! parname:text! paracl:text"),
    (
        "pg_partitioned_table",
        "partrelid:oid! partstrat:text! partnatts:int2! partdefid:oid! partattrs:text! partclass:text! \
         partcollation:text! partexprs:text",
    ),
    (
        "pg_policy",
        "oid:oid! polname:text! polrelid:oid! polcmd:text! polpermissive:bool! polroles:text! polqual:text \
         polwithcheck:text",
    ),
    (
        "pg_proc",
        "oid:oid! proname:text! pronamespace:oid! proowner:oid! prolang:oid! procost:float4! prorows:float4! \
         provariadic:oid! prosupport:text! prokind:text! prosecdef:bool! proleakproof:bool! proisstrict:bool! \
         proretset:bool! provolatile:text! proparallel:text! pronargs:int2! pronargdefaults:int2! \
         prorettype:oid! proargtypes:text! proallargtypes:text proargmodes:text proargnames:text \
         proargdefaults:text protrftypes:text prosrc:text! probin:text prosqlbody:text proconfig:text \
         proacl:text",
    ),
    (
        "pg_publication",
        "oid:oid! pubname:text! pubowner:oid! puballtables:bool! pubinsert:bool! pubupdate:bool! \
         pubdelete:bool! pubtruncate:bool! pubviaroot:bool!",
    ),
    ("pg_publication_namespace", "oid:oid! pnpubid:oid! pnnspid:oid!"),
    ("pg_publication_rel", "oid:oid! prpubid:oid! prrelid:oid! prqual:text prattrs:text"),
    (
        "pg_range",
        "rngtypid:oid! rngsubtype:oid! rngmultitypid:oid! rngcollation:oid! rngsubopc:oid! rngcanonical:text! \
         rngsubdiff:text!",
    ),
    ("pg_replication_origin", "roident:oid! roname:text!"),
    (
        "pg_rewrite",
        "oid:oid! rulename:text! ev_class:oid! ev_type:text! ev_enabled:text! is_instead:bool! ev_qual:text! \
         ev_action:text!",
    ),
    ("pg_seclabel", "objoid:oid! classoid:oid! objsubid:int4! provider:text! label:text!"),
    (
        "pg_sequence",
        "seqrelid:oid! seqtypid:oid! seqstart:int8! seqincrement:int8! seqmax:int8! seqmin:int8! \
         seqcache:int8! seqcycle:bool!",
    ),
    ("pg_shdepend", "dbid:oid! classid:oid! objid:oid! objsubid:int4! refclassid:oid! refobjid:oid! deptype:text!"),
    ("pg_shdescription", "objoid:oid! classoid:oid! description:text!"),
    ("pg_shseclabel", "objoid:oid! classoid:oid! provider:text! label:text!"),
    (
        "pg_statistic",
        "starelid:oid! staattnum:int2! stainherit:bool! stanullfrac:float4! stawidth:int4! \
         stadistinct:float4! stakind1:int2! stakind2:int2! stakind3:int2! stakind4:int2! stakind5:int2! \
         staop1:oid! staop2:oid! staop3:oid! staop4:oid! staop5:oid! stacoll1:oid! stacoll2:oid! \
         stacoll3:oid! stacoll4:oid! stacoll5:oid! stanumbers1:text stanumbers2:text stanumbers3:text \
         stanumbers4:text stanumbers5:text stavalues1:text stavalues2:text stavalues3:text stavalues4:text \
         stavalues5:text",
    ),
    (
        "pg_statistic_ext",
        "oid:oid! stxrelid:oid! stxname:text! stxnamespace:oid! stxowner:oid! stxkeys:text! \
         stxstattarget:int2 stxkind:text! stxexprs:text",
    ),
    (
        "pg_statistic_ext_data",
        "stxoid:oid! stxdinherit:bool! stxdndistinct:text stxddependencies:text stxdmcv:text stxdexpr:text",
    ),
    (
        "pg_subscription",
        "oid:oid! subdbid:oid! subskiplsn:text! subname:text! subowner:oid! subenabled:bool! subbinary:bool! \
         substream:text! subtwophasestate:text! subdisableonerr:bool! subpasswordrequired:bool! \
         subrunasowner:bool! subfailover:bool! subconninfo:text! subslotname:text subsynccommit:text! \
         subpublications:text! suborigin:text",
    ),
    ("pg_subscription_rel", "srsubid:oid! srrelid:oid! srsubstate:text! srsublsn:text"),
    ("pg_tablespace", "oid:oid! spcname:text! spcowner:oid! spcacl:text spcoptions:text"),
    ("pg_transform", "oid:oid! trftype:oid! trflang:oid! trffromsql:int4! trftosql:int4!"),
    (
        "pg_trigger",
        "oid:oid! tgrelid:oid! tgparentid:oid! tgname:text! tgfoid:oid! tgtype:int2! tgenabled:text! \
         tgisinternal:bool! tgconstrrelid:oid! tgconstrindid:oid! tgconstraint:oid! tgdeferrable:bool! \
         tginitdeferred:bool! tgnargs:int2! tgattr:text! tgargs:bytea! tgqual:text tgoldtable:text \
         tgnewtable:text",
    ),
    ("pg_ts_config", "oid:oid! cfgname:text! cfgnamespace:oid! cfgowner:oid! cfgparser:oid!"),
    ("pg_ts_config_map", "mapcfg:oid! maptokentype:int4! mapseqno:int4! mapdict:oid!"),
    ("pg_ts_dict", "oid:oid! dictname:text! dictnamespace:oid! dictowner:oid! dicttemplate:oid! dictinitoption:text"),
    (
        "pg_ts_parser",
        "oid:oid! prsname:text! prsnamespace:oid! prsstart:text! prstoken:text! prsend:text! \
         prsheadline:text! prslextype:text!",
    ),
    ("pg_ts_template", "oid:oid! tmplname:text! tmplnamespace:oid! tmplinit:text! tmpllexize:text!"),
    ("pg_user_mapping", "oid:oid! umuser:oid! umserver:oid! umoptions:text"),
];
