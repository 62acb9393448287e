
async def receiver(packet_log):
    print(packet_log)

