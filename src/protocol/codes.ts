// Wire message type bytes (PostgreSQL protocol 3), startup codes and protocol limits.

/** Messages a client (frontend) sends. */
export const enum Fe {
  Bind = 66, // B
  Close = 67, // C
  Describe = 68, // D
  Execute = 69, // E
  FunctionCall = 70, // F
  Flush = 72, // H
  Parse = 80, // P
  Query = 81, // Q
  Sync = 83, // S
  Terminate = 88, // X
  CopyData = 100, // d
  CopyDone = 99, // c
  CopyFail = 102, // f
  Password = 112, // p (also SASLInitialResponse / SASLResponse / GSSResponse)
}

/** Messages a server (backend) sends. */
export const enum Be {
  ParseComplete = 49, // 1
  BindComplete = 50, // 2
  CloseComplete = 51, // 3
  NotificationResponse = 65, // A
  CommandComplete = 67, // C
  DataRow = 68, // D
  ErrorResponse = 69, // E
  CopyInResponse = 71, // G
  CopyOutResponse = 72, // H
  EmptyQueryResponse = 73, // I
  BackendKeyData = 75, // K
  NoticeResponse = 78, // N
  Authentication = 82, // R
  ParameterStatus = 83, // S
  RowDescription = 84, // T
  FunctionCallResponse = 86, // V
  CopyBothResponse = 87, // W
  ReadyForQuery = 90, // Z
  CopyDone = 99, // c
  CopyData = 100, // d
  NoData = 110, // n
  PortalSuspended = 115, // s
  ParameterDescription = 116, // t
  NegotiateProtocolVersion = 118, // v
}

/** Authentication request subcodes inside an 'R' message. */
export const enum AuthCode {
  Ok = 0,
  CleartextPassword = 3,
  MD5Password = 5,
  SASL = 10,
  SASLContinue = 11,
  SASLFinal = 12,
}

/** Transaction status byte of ReadyForQuery. */
export const enum TxStatus {
  Idle = 73, // I
  InTransaction = 84, // T
  Failed = 69, // E
}

export const PROTOCOL_3_0 = 196608; // 3 << 16
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

/** PostgreSQL's MAX_STARTUP_PACKET_LENGTH: the body after the length word; the whole packet may be 4 bytes more. */
export const MAX_STARTUP_PACKET = 10000 + 4;
/** Messages that carry no payload of note may not exceed this (PG_MAX_AUTH_TOKEN_LENGTH-like bound). */
export const MAX_SMALL_MESSAGE = 10000;
/** Largest authentication message from a client (SCRAM, password). */
export const MAX_AUTH_MESSAGE = 65535;
