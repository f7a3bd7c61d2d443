from services.orders.app import wire
from shared.runtime.service import serve

serve("orders", wire, title="xo-reseller orders")
