// SQLSTATE codes the proxy reports itself (names follow PostgreSQL's errcodes.txt).

export const SqlState = {
  SuccessfulCompletion: "00000",
  ConnectionException: "08000",
  ConnectionDoesNotExist: "08003",
  ConnectionFailure: "08006",
  SqlClientUnableToEstablish: "08001",
  TransactionResolutionUnknown: "08007",
  ProtocolViolation: "08P01",
  FeatureNotSupported: "0A000",
  InvalidAuthorizationSpecification: "28000",
  InvalidPassword: "28P01",
  InvalidCatalogName: "3D000",
  ReadOnlySqlTransaction: "25006",
  ActiveSqlTransaction: "25001",
  InFailedSqlTransaction: "25P02",
  IdleInTransactionSessionTimeout: "25P03",
  DuplicatePreparedStatement: "42P05",
  InvalidSqlStatementName: "26000",
  TooManyConnections: "53300",
  ConfigurationLimitExceeded: "53400",
  QueryCanceled: "57014",
  AdminShutdown: "57P01",
  CannotConnectNow: "57P03",
  IdleSessionTimeout: "57P05",
  SerializationFailure: "40001",
  InternalError: "XX000",
  InsufficientPrivilege: "42501",
  SyntaxError: "42601",
} as const;

export type SqlStateCode = (typeof SqlState)[keyof typeof SqlState];
