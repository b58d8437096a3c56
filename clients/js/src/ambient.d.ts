// The optional `ws` package, loaded on Node.js 20-21 only: its types are not needed here.
declare module "ws" {
  const WebSocket: unknown;
  export { WebSocket };
  export default WebSocket;
}
